//! The object store behind a sink: a local directory (`LocalFileSystem`) or an S3 prefix
//! (`AmazonS3`, path-style), seen through paths relative to the target's root. Every request
//! goes through one place that retries transient failures with exponential backoff (remote
//! stores only) and turns errors into [`SinkError`]s naming the target and the full location.

use super::config::{RetryPolicy, S3Options, SinkConfig};
use super::error::SinkError;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a target points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// Parses `dir`, `file:///dir` or `s3://bucket[/prefix]`.
pub(crate) fn parse_target(target: &str) -> Result<Target, SinkError> {
    let bad = |reason: &str| SinkError::Config {
        target: target.to_string(),
        reason: reason.to_string(),
    };
    if target.is_empty() {
        return Err(bad("no target given (a directory or s3://bucket/prefix)"));
    }
    if let Some(rest) = target.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("an s3:// target needs a bucket: s3://bucket/prefix"));
        }
        let prefix = prefix.trim_matches('/').to_string();
        return Ok(Target::S3 {
            bucket: bucket.to_string(),
            prefix,
        });
    }
    if let Some(rest) = target.strip_prefix("file://") {
        if rest.is_empty() {
            return Err(bad("a file:// target needs a path"));
        }
        return Ok(Target::Local(PathBuf::from(rest)));
    }
    if let Some((scheme, _)) = target.split_once("://") {
        return Err(bad(&format!(
            "unsupported scheme {scheme}:// (use a directory, file:// or s3://)"
        )));
    }
    Ok(Target::Local(PathBuf::from(target)))
}

/// A store and the root of the sink in it.
#[derive(Debug)]
pub(crate) struct Store {
    inner: Arc<dyn ObjectStore>,
    root: Path,
    /// The target as configured, for messages.
    target: String,
    /// The target without a trailing `/`, to which relative paths are appended in messages.
    shown_root: String,
    retry: RetryPolicy,
    remote: bool,
}

impl Store {
    /// Opens the store of `cfg.target`. A local directory is created when missing. Nothing is
    /// requested from a remote store yet.
    pub(crate) fn open(cfg: &SinkConfig) -> Result<Store, SinkError> {
        let target = cfg.target.clone();
        let config_err = |reason: String| SinkError::Config {
            target: target.clone(),
            reason,
        };
        let shown_root = target.trim_end_matches('/').to_string();
        let retry = RetryPolicy {
            attempts: cfg.retry.attempts.max(1),
            ..cfg.retry
        };
        match parse_target(&target)? {
            Target::Local(dir) => {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    config_err(format!("cannot create directory {}: {e}", dir.display()))
                })?;
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| config_err(format!("cannot open {}: {e}", dir.display())))?
                    .with_fsync(true)
                    .with_automatic_cleanup(true);
                Ok(Store {
                    inner: Arc::new(fs),
                    root: Path::default(),
                    target,
                    shown_root,
                    retry: RetryPolicy {
                        attempts: 1,
                        ..retry
                    },
                    remote: false,
                })
            }
            Target::S3 { bucket, prefix } => {
                let s3 = s3_store(&bucket, &cfg.s3.clone().with_env())
                    .map_err(|e| config_err(format!("cannot configure S3: {e}")))?;
                Ok(Store {
                    inner: Arc::new(s3),
                    root: Path::from(prefix.as_str()),
                    target,
                    shown_root,
                    retry,
                    remote: true,
                })
            }
        }
    }

    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// The store path of `rel` (a `/`-separated path below the root).
    fn full(&self, rel: &str) -> Path {
        if self.root.as_ref().is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.root))
        }
    }

    /// `rel` as a user finds it: the target followed by the relative path.
    pub(crate) fn location(&self, rel: &str) -> String {
        format!("{}/{rel}", self.shown_root)
    }

    fn error(
        &self,
        op: &'static str,
        rel: &str,
        attempts: u32,
        e: object_store::Error,
    ) -> SinkError {
        let text = e.to_string();
        let hint = if text.contains("NoSuchBucket") {
            " (the bucket does not exist: create it first)".to_string()
        } else if self.remote
            && matches!(e, object_store::Error::Generic { .. })
            && (text.contains("error sending request") || text.contains("connect"))
        {
            " (no answer from the S3 endpoint: is it running and reachable?)".to_string()
        } else {
            String::new()
        };
        SinkError::Store {
            target: self.target.clone(),
            op,
            location: self.location(rel),
            attempts,
            hint,
            source: Box::new(e),
        }
    }

    /// Runs `f` until it succeeds, fails for good, or the attempts are spent.
    async fn retrying<T, F, Fut>(
        &self,
        op: &'static str,
        rel: &str,
        mut f: F,
    ) -> Result<T, SinkError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut attempt = 1;
        let mut pause = self.retry.first_backoff_ms;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < self.retry.attempts && self.transient(&e) => {
                    tracing::warn!(target: "shopdiff::sink", "{}: {op} {} failed (attempt {attempt}), retrying in {pause} ms: {e}", self.target, self.location(rel));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    pause = (pause.saturating_mul(2)).min(self.retry.max_backoff_ms);
                    attempt += 1;
                }
                Err(e) => return Err(self.error(op, rel, attempt, e)),
            }
        }
    }

    /// Whether a failure may pass: remote stores only, and only errors that are not an answer
    /// about the object (missing, existing, forbidden, unsupported).
    fn transient(&self, e: &object_store::Error) -> bool {
        self.remote
            && matches!(e, object_store::Error::Generic { .. })
            && !e.to_string().contains("NoSuchBucket")
    }

    /// Creates the object `rel` with `bytes`, failing when it exists with other contents. An
    /// object that exists with the same contents counts as written: it is this writer's own
    /// earlier attempt (a request that succeeded but whose answer was lost, or a file left by a
    /// crash that would be written again identically), so creating is idempotent.
    pub(crate) async fn put_create(&self, rel: &str, bytes: Bytes) -> Result<(), SinkError> {
        let path = self.full(rel);
        let put = self
            .retrying("write", rel, || {
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                let payload = PutPayload::from(bytes.clone());
                let path = &path;
                let inner = &self.inner;
                async move {
                    match inner.put_opts(path, payload, opts).await {
                        Ok(_) => Ok(true),
                        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        if put {
            return Ok(());
        }
        match self.get(rel).await? {
            Some(existing) if existing == bytes => Ok(()),
            _ => Err(SinkError::Conflict {
                target: self.target.clone(),
                location: self.location(rel),
            }),
        }
    }

    /// The contents of `rel`, or `None` when it does not exist.
    pub(crate) async fn get(&self, rel: &str) -> Result<Option<Bytes>, SinkError> {
        let path = self.full(rel);
        self.retrying("read", rel, || async {
            match self.inner.get(&path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Every object below `rel_prefix` (a directory, without trailing `/`), as paths relative
    /// to the root.
    pub(crate) async fn list(&self, rel_prefix: &str) -> Result<Vec<String>, SinkError> {
        let prefix = if rel_prefix.is_empty() {
            self.root.clone()
        } else {
            self.full(rel_prefix)
        };
        let metas = self
            .retrying("list", rel_prefix, || {
                let stream = if prefix.as_ref().is_empty() {
                    self.inner.list(None)
                } else {
                    self.inner.list(Some(&prefix))
                };
                stream.try_collect::<Vec<_>>()
            })
            .await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                m.location.prefix_match(&self.root).map(|parts| {
                    parts
                        .map(|p| p.as_ref().to_string())
                        .collect::<Vec<_>>()
                        .join("/")
                })
            })
            .collect())
    }

    /// Deletes `rel`; a missing object is not an error.
    pub(crate) async fn delete(&self, rel: &str) -> Result<(), SinkError> {
        let path = self.full(rel);
        self.retrying("delete", rel, || async {
            match self.inner.delete(&path).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                r => r,
            }
        })
        .await
    }
}

/// An S3 client for `bucket` with `opts` (already completed from the environment).
fn s3_store(bucket: &str, opts: &S3Options) -> object_store::Result<object_store::aws::AmazonS3> {
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(opts.region.as_deref().unwrap_or("us-east-1"))
        .with_virtual_hosted_style_request(false)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(30),
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(120)),
        )
        // after the client options, which would reset it
        .with_allow_http(opts.allow_http);
    if let Some(endpoint) = &opts.endpoint {
        b = b.with_endpoint(endpoint);
    }
    if let Some(key) = &opts.access_key_id {
        b = b.with_access_key_id(key);
    }
    if let Some(secret) = &opts.secret_access_key {
        b = b.with_secret_access_key(secret);
    }
    b.build()
}
