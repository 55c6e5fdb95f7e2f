//! One streaming execution shared by gRPC `ExecuteStream` and the REST event stream:
//! progress events, then the result, then (when asked) the stored artifacts in chunks.
//! Each transport only renders [`StreamItem`]s in its own wire format.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::model::{
    ApiError, ApiResult, Caller, DeviceKind, ExecuteRequest, ExecuteResponse, ProgressEvent,
    RunContext, Scope,
};
use crate::store::ArtifactBody;

/// Largest artifact chunk per event, well under any gRPC message cap (and a data line a
/// browser's EventSource takes in stride once base64-encoded).
pub const ARTIFACT_CHUNK: usize = 1 << 20;

/// One piece of an artifact, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactPiece {
    pub name: String,
    pub offset: u64,
    pub data: Bytes,
    /// The artifact's final piece (an empty artifact is one empty, last piece).
    pub last: bool,
}

#[derive(Debug)]
pub enum StreamItem {
    Progress(ProgressEvent),
    Result(Box<ExecuteResponse>),
    Artifact(ArtifactPiece),
    /// Ends the stream: the run failed, or an artifact could not be read back.
    Error(ApiError),
}

/// Start `req` in the background and return its events. Dropping the receiver (the client
/// went away) cancels the run at its next checkpoint.
pub fn execute(
    engine: Arc<Engine>,
    caller: Caller,
    req: ExecuteRequest,
) -> mpsc::Receiver<StreamItem> {
    let (tx, rx) = mpsc::channel::<StreamItem>(64);
    tokio::spawn(async move {
        let cancel = CancellationToken::new();
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
        let ctx = RunContext::new(0, DeviceKind::Cpu)
            .with_cancel(cancel.clone())
            .with_progress(progress_tx);
        let stream_artifacts = req.stream_artifacts;
        let save_artifacts = req.save_artifacts;
        let scope = Scope::new(&caller.org, &caller.namespace);
        let run = engine.execute(&caller, req, ctx);
        tokio::pin!(run);
        let outcome = loop {
            tokio::select! {
                outcome = &mut run => break outcome,
                Some(event) = progress_rx.recv() => {
                    if tx.send(StreamItem::Progress(event)).await.is_err() {
                        cancel.cancel();
                    }
                }
                _ = tx.closed(), if !cancel.is_cancelled() => cancel.cancel(),
            }
        };
        while let Ok(event) = progress_rx.try_recv() {
            let _ = tx.send(StreamItem::Progress(event)).await;
        }
        let response = match outcome {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(StreamItem::Error(e)).await;
                return;
            }
        };
        let names = if stream_artifacts {
            artifact_names(&response, save_artifacts)
        } else {
            Vec::new()
        };
        let run_id = response.run_id.clone();
        if tx
            .send(StreamItem::Result(Box::new(response)))
            .await
            .is_err()
            || names.is_empty()
        {
            return;
        }
        let scope = match scope {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(StreamItem::Error(e)).await;
                return;
            }
        };
        for name in names {
            let pieces = match engine.store().get_artifact(&scope, &run_id, name).await {
                Ok(body) => artifact_pieces(name, body),
                Err(e) => {
                    let _ = tx.send(StreamItem::Error(e)).await;
                    return;
                }
            };
            tokio::pin!(pieces);
            while let Some(piece) = pieces.next().await {
                let (item, failed) = match piece {
                    Ok(p) => (StreamItem::Artifact(p), false),
                    Err(e) => (StreamItem::Error(e), true),
                };
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        }
    });
    rx
}

/// A unary execute has no stream to send artifacts on; saying so beats ignoring the flag.
pub fn unary_refuses_stream_artifacts(instead: &str) -> ApiError {
    ApiError::invalid_request(
        "stream_artifacts",
        format!("artifacts are streamed only on a streaming execute; {instead}"),
    )
}

/// The artifacts the run stored, in the order they are streamed.
fn artifact_names(response: &ExecuteResponse, save_artifacts: bool) -> Vec<&'static str> {
    let mut names = Vec::new();
    if response.parquet_path.is_some() {
        names.push("clusters.parquet");
    }
    if response.members_key.is_some() {
        names.push("members.parquet");
    }
    if save_artifacts {
        names.push("sample.parquet");
    }
    names
}

/// Re-chunk an artifact's byte stream into pieces of at most [`ARTIFACT_CHUNK`] bytes with
/// their offsets. The store's own pieces have arbitrary sizes, and its reported size may
/// not be trusted to mark the end, so one piece is held back until the next is known.
pub fn artifact_pieces(
    name: &str,
    body: ArtifactBody,
) -> impl Stream<Item = ApiResult<ArtifactPiece>> + Send + 'static {
    struct State {
        source: futures::stream::BoxStream<'static, ApiResult<Bytes>>,
        buffer: BytesMut,
        offset: u64,
        done: bool,
        name: String,
    }
    let state = State {
        source: body.stream,
        buffer: BytesMut::new(),
        offset: 0,
        done: false,
        name: name.to_owned(),
    };
    futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        // Fill until more than one chunk is buffered, so that the piece handed out is
        // known not to be the last one, or the source ends.
        while s.buffer.len() <= ARTIFACT_CHUNK {
            match s.source.next().await {
                Some(Ok(bytes)) => s.buffer.extend_from_slice(&bytes),
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
                None => {
                    s.done = true;
                    let data = s.buffer.split().freeze();
                    let piece = ArtifactPiece {
                        name: s.name.clone(),
                        offset: s.offset,
                        data,
                        last: true,
                    };
                    return Some((Ok(piece), s));
                }
            }
        }
        let data = s.buffer.split_to(ARTIFACT_CHUNK).freeze();
        let piece = ArtifactPiece {
            name: s.name.clone(),
            offset: s.offset,
            last: false,
            data,
        };
        s.offset += piece.data.len() as u64;
        Some((Ok(piece), s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(pieces: Vec<ApiResult<Bytes>>) -> ArtifactBody {
        let size = pieces
            .iter()
            .map(|p| p.as_ref().map_or(0, |b| b.len() as u64))
            .sum();
        ArtifactBody {
            size,
            stream: futures::stream::iter(pieces).boxed(),
        }
    }

    async fn collect(pieces: Vec<ApiResult<Bytes>>) -> Vec<ApiResult<ArtifactPiece>> {
        artifact_pieces("members.parquet", body(pieces))
            .collect()
            .await
    }

    #[tokio::test]
    async fn pieces_reassemble_the_artifact_with_offsets_and_one_last_mark() {
        let bytes: Vec<u8> = (0..(2 * ARTIFACT_CHUNK + 123))
            .map(|i| (i % 251) as u8)
            .collect();
        // Source pieces of odd sizes that straddle chunk boundaries.
        let source: Vec<ApiResult<Bytes>> = bytes
            .chunks(ARTIFACT_CHUNK / 3 + 7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let pieces: Vec<ArtifactPiece> = collect(source)
            .await
            .into_iter()
            .map(|p| p.unwrap())
            .collect();
        assert_eq!(pieces.len(), 3);
        let mut joined = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            assert_eq!(p.name, "members.parquet");
            assert_eq!(p.offset, joined.len() as u64);
            assert!(p.data.len() <= ARTIFACT_CHUNK);
            assert_eq!(p.last, i == pieces.len() - 1);
            joined.extend_from_slice(&p.data);
        }
        assert_eq!(joined, bytes);
    }

    #[tokio::test]
    async fn an_artifact_of_exactly_one_chunk_is_one_last_piece() {
        let pieces = collect(vec![Ok(Bytes::from(vec![7u8; ARTIFACT_CHUNK]))]).await;
        assert_eq!(pieces.len(), 1);
        let p = pieces[0].as_ref().unwrap();
        assert!(p.last && p.offset == 0 && p.data.len() == ARTIFACT_CHUNK);
    }

    #[tokio::test]
    async fn an_empty_artifact_is_one_empty_last_piece() {
        let pieces = collect(Vec::new()).await;
        assert_eq!(pieces.len(), 1);
        let p = pieces[0].as_ref().unwrap();
        assert!(p.last && p.data.is_empty());
    }

    #[tokio::test]
    async fn a_read_failure_ends_the_pieces_with_the_error() {
        let pieces = collect(vec![
            Ok(Bytes::from_static(b"PAR1")),
            Err(ApiError::internal("disk went away")),
        ])
        .await;
        assert_eq!(pieces.len(), 1);
        assert!(pieces[0].is_err());
    }
}
