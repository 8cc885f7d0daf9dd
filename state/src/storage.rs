//! [`CheckpointStorage`]: where checkpoints live, through `object_store`.
//!
//! # Contract
//!
//! Paths are `/`-separated and relative to the storage root (the URL given
//! to [`CheckpointStorage::open`]).
//!
//! - [`put`](CheckpointStorage::put) is atomic: a reader sees the whole old
//!   object or the whole new one, never a part.
//! - [`put_if_absent`](CheckpointStorage::put_if_absent) creates an object
//!   only if none exists, atomically: of two concurrent calls on one path,
//!   exactly one returns `true`. Commit markers rely on it.
//! - After a successful put, `get`, `exists` and `list_dir` see the object
//!   (read-after-write).
//! - [`get`](CheckpointStorage::get) of a missing object fails with
//!   [`StateError::NotFound`].
//!
//! Every backend passes the suite in `state/tests/storage.rs`.

use crate::error::StateError;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use tokio::runtime::Runtime;

/// Where checkpoints are written by default, under the data directory.
pub fn default_checkpoint_dir() -> std::path::PathBuf {
    data_dir().join("checkpoints")
}

/// Weir's data directory: `$WEIR_DATA_DIR`, else `$XDG_DATA_HOME/weir`,
/// else `$HOME/.local/share/weir`, else `./.weir`.
pub fn data_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_DATA_DIR") {
        return dir.into();
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return std::path::PathBuf::from(dir).join("weir");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return std::path::PathBuf::from(home).join(".local/share/weir");
    }
    std::path::PathBuf::from(".weir")
}

/// How one request to an object store is retried: a blip is absorbed
/// within the request (3 retries, at most 5 s); a longer outage surfaces as
/// an error, so that Weir's own policy takes over where it shows: the
/// checkpoint is declined and tried again at the next interval, a restore
/// waits for storage. Longer retries here would hide the outage and keep
/// the first checkpoint after it asleep in a backoff of up to 15 s.
fn request_retries() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(5),
    }
}

/// The I/O runtime every storage handle of the process shares: opening
/// storage is cheap (the CLI, the catalog and each restore open their own
/// handle), and all of them drive `object_store` on the same two threads.
fn io_runtime() -> std::io::Result<Arc<Runtime>> {
    static IO: OnceLock<Arc<Runtime>> = OnceLock::new();
    if let Some(io) = IO.get() {
        return Ok(io.clone());
    }
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("weir-io")
        .enable_all()
        .build()?;
    // Two threads may race here; the loser's runtime is dropped unused.
    Ok(IO.get_or_init(|| Arc::new(built)).clone())
}

/// A directory listing: immediate subdirectories and files with sizes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Names of subdirectories (common prefixes), sorted.
    pub dirs: Vec<String>,
    /// Names and sizes of files, sorted by name.
    pub files: Vec<(String, u64)>,
}

/// Checkpoint storage at one root URL, with a blocking API for the
/// runtime's threads (it drives `object_store` on its own small I/O runtime).
#[derive(Clone)]
pub struct CheckpointStorage {
    url: String,
    store: Arc<dyn ObjectStore>,
    root: Path,
    io: Arc<Runtime>,
}

impl std::fmt::Debug for CheckpointStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStorage")
            .field("url", &self.url)
            .finish()
    }
}

impl CheckpointStorage {
    /// Opens the storage at `location`: a `file://` URL or a local path
    /// (created if missing), or `s3://bucket/prefix` configured from the
    /// usual AWS environment variables (`AWS_ENDPOINT`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP=true`
    /// for a plain-HTTP endpoint).
    pub fn open(location: &str) -> Result<Self, StateError> {
        Self::open_with_options(location, &[])
    }

    /// Like [`open`](Self::open), with settings that take precedence over
    /// the environment: for `s3://`, `object_store`'s S3 keys such as
    /// `aws_endpoint`, `aws_region`, `aws_access_key_id`,
    /// `aws_secret_access_key`, `aws_allow_http`.
    pub fn open_with_options(location: &str, options: &[(&str, &str)]) -> Result<Self, StateError> {
        let bad = |problem: String| StateError::BadLocation {
            location: location.to_owned(),
            problem,
        };
        let (scheme, rest) = match location.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => ("file", location),
        };
        let io = io_runtime().map_err(|e| bad(format!("cannot start I/O threads: {e}")))?;
        match scheme {
            "file" => {
                if rest.is_empty() {
                    return Err(bad("the path is empty".into()));
                }
                let dir = std::path::PathBuf::from(rest);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| bad(format!("cannot create directory: {e}")))?;
                let dir = dir
                    .canonicalize()
                    .map_err(|e| bad(format!("cannot resolve directory: {e}")))?;
                // Cleanup removes directories left empty by deletes, so a
                // deleted checkpoint leaves no trace in listings.
                let store = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| bad(format!("cannot open directory: {e}")))?
                    .with_automatic_cleanup(true);
                Ok(Self {
                    url: format!("file://{}", dir.display()),
                    store: Arc::new(store),
                    root: Path::default(),
                    io,
                })
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("the bucket name is empty".into()));
                }
                // Endpoint, region, credentials and AWS_ALLOW_HTTP come from
                // the usual AWS environment variables.
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                for (key, value) in options {
                    let key = AmazonS3ConfigKey::from_str(key)
                        .map_err(|e| bad(format!("unknown S3 setting '{key}': {e}")))?;
                    builder = builder.with_config(key, *value);
                }
                // Without credentials, the S3 client falls back to the EC2
                // instance-metadata address and fails on the first request
                // with an error about that address: say what is missing.
                let configured = |key| builder.get_config_value(&key).is_some();
                let web_identity = std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_some()
                    || std::env::var_os("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some();
                let has_keys = configured(AmazonS3ConfigKey::AccessKeyId)
                    && configured(AmazonS3ConfigKey::SecretAccessKey);
                let instance = configured(AmazonS3ConfigKey::MetadataEndpoint);
                let anonymous = builder
                    .get_config_value(&AmazonS3ConfigKey::SkipSignature)
                    .is_some_and(|v| v == "true");
                if !(has_keys || web_identity || instance || anonymous) {
                    let missing: Vec<&str> = [
                        (AmazonS3ConfigKey::AccessKeyId, "AWS_ACCESS_KEY_ID"),
                        (AmazonS3ConfigKey::SecretAccessKey, "AWS_SECRET_ACCESS_KEY"),
                    ]
                    .into_iter()
                    .filter(|(key, _)| !configured(*key))
                    .map(|(_, name)| name)
                    .collect();
                    return Err(bad(format!(
                        "no S3 credentials: set {} (with AWS_ENDPOINT, AWS_REGION and AWS_ALLOW_HTTP=true for a server of your own), or AWS_METADATA_ENDPOINT to use an EC2 instance's role",
                        missing.join(" and ")
                    )));
                }
                let store = builder
                    .with_retry(request_retries())
                    .build()
                    .map_err(|e| bad(format!("cannot configure S3: {e}")))?;
                let root = Path::parse(prefix.trim_matches('/'))
                    .map_err(|e| bad(format!("bad prefix: {e}")))?;
                Ok(Self {
                    url: format!("s3://{bucket}/{}", root.as_ref()),
                    store: Arc::new(store),
                    root,
                    io,
                })
            }
            other => Err(bad(format!(
                "unsupported scheme '{other}' (supported: file://, s3://, or a plain path)"
            ))),
        }
    }

    /// The storage's root URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, relative: &str) -> Result<Path, StateError> {
        let relative = Path::parse(relative).map_err(|e| StateError::BadLocation {
            location: relative.to_owned(),
            problem: e.to_string(),
        })?;
        Ok(self.root.parts().chain(relative.parts()).collect())
    }

    fn storage_error<'a>(
        op: &'static str,
        path: &'a str,
    ) -> impl FnOnce(object_store::Error) -> StateError + 'a {
        move |source| match source {
            object_store::Error::NotFound { .. } => StateError::NotFound {
                path: path.to_owned(),
            },
            source => StateError::Storage {
                op,
                path: path.to_owned(),
                source: Box::new(source),
            },
        }
    }

    /// Writes `bytes` at `path`, replacing any object there.
    pub fn put(&self, path: &str, bytes: Vec<u8>) -> Result<(), StateError> {
        let location = self.path(path)?;
        self.io
            .block_on(self.store.put(&location, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(Self::storage_error("writing", path))
    }

    /// Writes `bytes` at `path` only if nothing is there; `false` if
    /// something was.
    pub fn put_if_absent(&self, path: &str, bytes: Vec<u8>) -> Result<bool, StateError> {
        let location = self.path(path)?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self.io.block_on(
            self.store
                .put_opts(&location, PutPayload::from(bytes), options),
        ) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(Self::storage_error("creating", path)(e)),
        }
    }

    /// Reads the object at `path`.
    pub fn get(&self, path: &str) -> Result<Vec<u8>, StateError> {
        let location = self.path(path)?;
        self.io
            .block_on(async {
                let result = self.store.get(&location).await?;
                result.bytes().await
            })
            .map(|b| b.to_vec())
            .map_err(Self::storage_error("reading", path))
    }

    /// Reads checkpoint file `file` of job `job_id` (its path is relative to
    /// the job's directory), checked against its size and checksum
    /// ([`snapshot::check_file`](crate::snapshot::check_file)).
    pub fn get_checked(
        &self,
        job_id: &str,
        file: &weir_protocol::StateFile,
    ) -> Result<Vec<u8>, StateError> {
        let path = format!(
            "{}/{}",
            weir_protocol::checkpoint::paths::job_dir(job_id),
            file.path
        );
        let bytes = self.get(&path)?;
        crate::snapshot::check_file(&bytes, file, &path)?;
        Ok(bytes)
    }

    /// Whether an object exists at `path`.
    pub fn exists(&self, path: &str) -> Result<bool, StateError> {
        let location = self.path(path)?;
        match self.io.block_on(self.store.head(&location)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Self::storage_error("checking", path)(e)),
        }
    }

    /// The immediate contents of directory `path` ("" for the root).
    pub fn list_dir(&self, path: &str) -> Result<Listing, StateError> {
        let prefix = if path.is_empty() {
            self.root.clone()
        } else {
            self.path(path)?
        };
        let prefix_ref = (!prefix.as_ref().is_empty()).then_some(&prefix);
        let listing = self
            .io
            .block_on(self.store.list_with_delimiter(prefix_ref))
            .map_err(Self::storage_error("listing", path))?;
        let mut dirs: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        let mut files: Vec<(String, u64)> = listing
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(|n| (n.to_owned(), o.size)))
            .collect();
        dirs.sort();
        files.sort();
        Ok(Listing { dirs, files })
    }

    /// Every object under directory `path`, recursively: paths relative to
    /// `path`, with sizes, sorted.
    pub fn list_files(&self, path: &str) -> Result<Vec<(String, u64)>, StateError> {
        let prefix = self.path(path)?;
        let objects: Vec<_> = self
            .io
            .block_on(self.store.list(Some(&prefix)).try_collect::<Vec<_>>())
            .map_err(Self::storage_error("listing", path))?;
        let depth = prefix.parts().count();
        let mut files: Vec<(String, u64)> = objects
            .into_iter()
            .map(|o| {
                let relative: Vec<String> = o
                    .location
                    .parts()
                    .skip(depth)
                    .map(|p| p.as_ref().to_owned())
                    .collect();
                (relative.join("/"), o.size)
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Deletes the object at `path`; deleting a missing object succeeds.
    pub fn delete(&self, path: &str) -> Result<(), StateError> {
        let location = self.path(path)?;
        match self.io.block_on(self.store.delete(&location)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::storage_error("deleting", path)(e)),
        }
    }

    /// Deletes every object under directory `path`.
    pub fn delete_dir(&self, path: &str) -> Result<(), StateError> {
        let prefix = self.path(path)?;
        self.io
            .block_on(async {
                let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
                for object in objects {
                    match self.store.delete(&object.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })
            .map_err(Self::storage_error("deleting", path))
    }
}
