//! The one wgpu device of the process, its error handling, and the buffer plumbing that
//! every kernel wrapper shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use wgpu::util::DeviceExt;

use super::GpuError;

/// The shared device. Built once per process: adapters are slow to open (seconds on
/// lavapipe) and a GPU has a single memory pool that concurrent runs must share.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Compiled pipelines by kernel name: compiling WGSL costs milliseconds, and k-means
    /// dispatches the same kernels every iteration.
    pipelines: Mutex<HashMap<&'static str, Arc<wgpu::ComputePipeline>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.adapter_info.name)
            .field("backend", &self.adapter_info.backend)
            .finish_non_exhaustive()
    }
}

/// The outcome of the one attempt to open a device, kept so that later callers get the
/// same answer without retrying a missing driver on every request.
static SHARED: OnceLock<Result<Arc<GpuContext>, GpuError>> = OnceLock::new();

/// The process-wide context, opened on first use on whatever adapter wgpu prefers
/// (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF` are honoured).
pub fn shared_context() -> Result<Arc<GpuContext>, GpuError> {
    SHARED
        .get_or_init(|| GpuContext::open().map(Arc::new))
        .clone()
}

/// The shared context for tests, on any adapter (lavapipe included). Without one the
/// test is skipped with a message, unless `CLUSTERD_REQUIRE_GPU=1`, where CI must fail
/// rather than pass without having run a single kernel.
pub fn test_context() -> Option<Arc<GpuContext>> {
    match shared_context() {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            if std::env::var("CLUSTERD_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("CLUSTERD_REQUIRE_GPU=1 but no wgpu adapter could be opened: {e}");
            }
            eprintln!("SKIPPED: {e}; set CLUSTERD_REQUIRE_GPU=1 to fail instead");
            None
        }
    }
}

impl GpuContext {
    fn open() -> Result<GpuContext, GpuError> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env()
                .unwrap_or(wgpu::PowerPreference::HighPerformance),
            ..Default::default()
        };
        let adapter = pollster::block_on(instance.request_adapter(&options))
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let adapter_info = adapter.get_info();
        let desc = wgpu::DeviceDescriptor {
            label: Some("clusterd"),
            required_features: wgpu::Features::empty(),
            // The adapter's real limits: wgpu's defaults would cap bindings at 128 MiB and
            // workgroup memory at 16 KiB on hardware that offers far more.
            required_limits: adapter.limits(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| GpuError::NoAdapter(format!("{}: {e}", adapter_info.name)))?;
        // Errors outside an error scope would otherwise panic inside wgpu and take the
        // server down; every kernel runs in a scope, so reaching here is a bug to log.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            tracing::error!(error = %e, "uncaptured wgpu error");
        }));
        let limits = device.limits();
        tracing::info!(
            adapter = %adapter_info.name,
            backend = %adapter_info.backend,
            device_type = ?adapter_info.device_type,
            max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size,
            max_buffer_size = limits.max_buffer_size,
            max_compute_workgroups_per_dimension = limits.max_compute_workgroups_per_dimension,
            max_compute_workgroup_storage_size = limits.max_compute_workgroup_storage_size,
            "wgpu device opened"
        );
        Ok(GpuContext {
            device,
            queue,
            adapter_info,
            limits,
            pipelines: Mutex::new(HashMap::new()),
        })
    }

    /// Run `f` inside validation and out-of-memory error scopes, turning what wgpu reports
    /// into a [`GpuError`]. Scopes are thread-local, so concurrent callers do not see each
    /// other's errors.
    pub fn scoped<T>(&self, f: impl FnOnce() -> T) -> Result<T, GpuError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        if let Some(e) = oom {
            return Err(GpuError::from_wgpu(e));
        }
        if let Some(e) = validation {
            return Err(GpuError::from_wgpu(e));
        }
        Ok(out)
    }

    /// The compute pipeline of entry point `entry` of `source`, compiled once per name.
    pub fn pipeline(
        &self,
        name: &'static str,
        source: &str,
        entry: &str,
    ) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        if let Some(p) = self.lock_pipelines().get(name) {
            return Ok(p.clone());
        }
        let pipeline = Arc::new(self.compile(name, source, entry)?);
        // Two threads may race to compile the same kernel; either result is identical.
        self.lock_pipelines().insert(name, pipeline.clone());
        Ok(pipeline)
    }

    /// Compile without caching: a failure is a typed error, never a panic.
    pub fn compile(
        &self,
        label: &str,
        source: &str,
        entry: &str,
    ) -> Result<wgpu::ComputePipeline, GpuError> {
        self.scoped(|| {
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(label),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(label),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                })
        })
    }

    fn lock_pipelines(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<&'static str, Arc<wgpu::ComputePipeline>>> {
        // A panic while holding this lock cannot leave the map half-updated (inserts are
        // single calls), so a poisoned lock is still a usable cache.
        self.pipelines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The largest storage binding a kernel may use, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// A read-only storage buffer holding `data` (at least 4 bytes: wgpu rejects empty
    /// bindings).
    pub fn storage<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let contents: &[u8] = if bytes.is_empty() { &[0u8; 4] } else { bytes };
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// A writable storage buffer of `len` elements of 4 bytes that can be read back.
    pub fn output(&self, label: &str, len: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer holding `value`.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// A bind group for group 0 of `pipeline` with `buffers` at bindings 0, 1, 2, …
    pub fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        })
    }

    /// Record `dispatches` (pipeline, bind group, workgroup grid) into one compute pass
    /// each, submit, and wait for the device.
    pub fn run(
        &self,
        dispatches: &[(&wgpu::ComputePipeline, &wgpu::BindGroup, [u32; 2])],
    ) -> Result<(), GpuError> {
        let idx = self.scoped(|| {
            let mut enc = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            for (pipeline, bind, [gx, gy]) in dispatches {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, Some(*bind), &[]);
                pass.dispatch_workgroups(*gx, *gy, 1);
            }
            self.queue.submit([enc.finish()])
        })?;
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(idx),
                timeout: None,
            })
            .map_err(|e| GpuError::Map(e.to_string()))?;
        Ok(())
    }

    /// Copy the first `len` 4-byte elements of `buffer` back to the host.
    pub fn read<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<T>, GpuError> {
        debug_assert_eq!(std::mem::size_of::<T>(), 4);
        if len == 0 {
            return Ok(Vec::new());
        }
        let size = (len * 4) as u64;
        let staging = self.scoped(|| {
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut enc = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
            self.queue.submit([enc.finish()]);
            staging
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Map(e.to_string()))?;
        rx.recv()
            .map_err(|e| GpuError::Map(e.to_string()))?
            .map_err(|e| GpuError::Map(e.to_string()))?;
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| GpuError::Map(e.to_string()))?;
            // The mapped bytes carry no alignment promise for T: copy rather than cast.
            bytemuck::pod_collect_to_vec::<u8, T>(&view)
        };
        staging.unmap();
        Ok(out)
    }
}

/// A workgroup grid of at least `groups` workgroups within the per-dimension limit:
/// past it the grid grows a second dimension, and the kernel folds `(x, y)` back into
/// one index with the returned width.
pub fn grid(ctx: &GpuContext, groups: usize) -> [u32; 2] {
    let max = ctx.limits.max_compute_workgroups_per_dimension.max(1) as usize;
    let gx = groups.clamp(1, max);
    let gy = groups.div_ceil(gx).max(1);
    [gx as u32, gy as u32]
}
