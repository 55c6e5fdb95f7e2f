//! One choke point for "bytes read from the object store": every reader of the store
//! (Parquet parts, members pages, artifacts, run files) goes through `Store::inner`, so
//! wrapping that one handle counts them all without touching each reader.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use prometheus_client::metrics::counter::Counter;

/// An object store that adds the size of every successful read to `read`.
#[derive(Debug)]
pub(crate) struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    read: Counter,
}

impl CountingStore {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, read: Counter) -> Self {
        CountingStore { inner, read }
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    /// Counted when the store answers with the range it will send (`get`, `get_range`
    /// and footer suffix reads all arrive here); a HEAD transfers no body.
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        let got = self.inner.get_opts(location, options).await?;
        if !head {
            self.read
                .inc_by(got.range.end.saturating_sub(got.range.start));
        }
        Ok(got)
    }

    /// Delegated whole (stores coalesce ranges their own way), so the inner store's own
    /// range reads do not pass `get_opts` above and nothing is counted twice.
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let got = self.inner.get_ranges(location, ranges).await?;
        self.read
            .inc_by(got.iter().map(|b| b.len() as u64).sum::<u64>());
        Ok(got)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn reads_whole_ranged_and_multi_range_are_counted_once_and_heads_and_writes_not() {
        let read = Counter::default();
        let store = CountingStore::new(Arc::new(InMemory::new()), read.clone());
        let key = Path::from("a/b");
        store
            .put(&key, PutPayload::from(vec![7u8; 1000]))
            .await
            .unwrap();
        assert_eq!(read.get(), 0, "a write is not a read");
        store.head(&key).await.unwrap();
        assert_eq!(read.get(), 0, "a HEAD transfers no body");
        store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(read.get(), 1000);
        store.get_range(&key, 10..110).await.unwrap();
        assert_eq!(read.get(), 1100);
        store.get_ranges(&key, &[0..5, 500..600]).await.unwrap();
        assert_eq!(read.get(), 1205);
        assert!(store.get(&Path::from("missing")).await.is_err());
        assert_eq!(read.get(), 1205, "a failed read counts nothing");
    }
}
