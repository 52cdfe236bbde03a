//! Configuration: command-line flags, each with an environment-variable fallback.
//!
//! Every setting is a `--long-flag` and an `MLP_LAB_…` variable; the flag wins when both are
//! given. The limits of DESIGN.md ("Limits") live in [`Limits`], and [`Limit`] names each of
//! them, so an error that hits one can tell the client which setting raises it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;

mod access;
pub use access::{Access, AccessError, Token};

/// Everything the service reads at start-up.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "mlp-lab", version, about)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "MLP_LAB_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Directory where models, versions, datasets and jobs are stored. One process at a
    /// time: a second one on the same directory refuses to start, naming the first.
    #[arg(long, env = "MLP_LAB_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// PostgreSQL database that stores everything instead of --data-dir
    /// (`postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME`); its schema is migrated at start-up.
    #[arg(long, env = "MLP_LAB_DATABASE_URL", hide_env_values = true,
          value_parser = DatabaseUrl::unchecked, conflicts_with = "ephemeral")]
    pub database_url: Option<DatabaseUrl>,

    /// File holding the password of --database-url (surrounding whitespace ignored); it wins
    /// over a password in the URL.
    #[arg(long, env = "MLP_LAB_DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,

    /// Apply the migrations of --database-url's schema, then exit (0 when the schema is up
    /// to date), for operators who migrate before they roll out replicas.
    #[arg(long, env = "MLP_LAB_MIGRATE_ONLY", requires = "database_url",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub migrate_only: bool,

    /// Keep everything in memory and write nothing to --data-dir (for tests and demos).
    #[arg(long, env = "MLP_LAB_EPHEMERAL", value_parser = clap::builder::BoolishValueParser::new())]
    pub ephemeral: bool,

    /// Largest file under --data-dir (or value in --database-url) that is read back at
    /// start-up (bytes; KiB, MiB and GiB suffixes allowed). A larger one is not read: its
    /// object is listed as unavailable.
    #[arg(long, env = "MLP_LAB_MAX_STORED_FILE_BYTES", default_value_t = ByteSize(1 << 30))]
    pub max_stored_file_bytes: ByteSize,

    /// Training jobs that may run at once [default: the number of CPUs].
    #[arg(
        long,
        env = "MLP_LAB_MAX_RUNNING_JOBS",
        default_value_t = default_running_jobs(),
        hide_default_value = true,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_running_jobs: usize,

    /// How many nice steps below the server's own priority the threads that train run (0–19;
    /// 0 = the same priority). Higher lets predictions take a core from training whenever
    /// they need one.
    #[arg(
        long,
        env = "MLP_LAB_TRAINING_NICE",
        default_value_t = 10,
        value_parser = clap::value_parser!(i32).range(0..=19)
    )]
    pub training_nice: i32,

    /// Whether the threads that train run under Linux's `SCHED_IDLE` policy (the default): a
    /// prediction that wakes up takes a core from training at once, and training still runs
    /// at full speed on a core nothing else wants. `false` leaves them under the normal policy
    /// at `--training-nice`, where training keeps a share of a busy core (about a tenth at 10).
    #[arg(
        long,
        env = "MLP_LAB_TRAINING_IDLE",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub training_idle: bool,

    /// CPUs kept free of the jobs' own threads, for serving: they run on the others (the
    /// lowest-numbered this many of the CPUs the process may use are left out). On a core
    /// where training runs the scheduler never finds itself idle, so a serving thread that
    /// waits there is moved to another only by the periodic balancing, milliseconds later.
    /// A job's helper threads may use these CPUs while fewer jobs than CPUs train (one job
    /// alone trains on every CPU). 0 keeps none; with no more CPUs than this, none is kept.
    #[arg(long, env = "MLP_LAB_SERVING_CPUS", default_value_t = 1)]
    pub serving_cpus: usize,

    /// Threads one job trains on at most: its large matrix products are split across them
    /// (the bits do not depend on how many took part). 0: every CPU training may use. Jobs
    /// share those CPUs: a helper thread works only while fewer threads than CPUs are busy
    /// training, so several jobs never oversubscribe them.
    #[arg(long, env = "MLP_LAB_TRAINING_THREADS", default_value_t = 0)]
    pub training_threads: usize,

    /// Training jobs that may wait for a free slot; one more is answered with 429.
    #[arg(long, env = "MLP_LAB_MAX_QUEUED_JOBS", default_value_t = 1000)]
    pub max_queued_jobs: usize,

    /// Seconds a replica holds a job it trains without renewing its lease (under
    /// `--database-url`; renewed every third of it). When it goes quiet that long (killed,
    /// paused, cut off from the database) another replica marks the job `interrupted`, and
    /// every later write of the quiet one is refused.
    #[arg(
        long,
        env = "MLP_LAB_JOB_LEASE_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=15)
    )]
    pub job_lease_secs: u64,

    /// This replica's name in job views (`worker`) and in the database's job queue: unique
    /// among the replicas on one database [default: `<hostname>-<pid>`, unique on a host
    /// and, as a pod's hostname is its name, in a cluster].
    #[arg(long, env = "MLP_LAB_REPLICA_NAME", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub replica_name: Option<String>,

    /// Clients that may follow job events (`GET /v1/jobs/{id}/events`) at once, over all
    /// jobs; one more is answered with 429 and `Retry-After`. Each holds at most a page of
    /// events in the server, however slowly it reads.
    #[arg(
        long,
        env = "MLP_LAB_MAX_EVENT_SUBSCRIBERS",
        default_value_t = 1024,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_event_subscribers: usize,

    /// Clients that may follow one job's events at once; one more is answered with 429 and
    /// `Retry-After`.
    #[arg(
        long,
        env = "MLP_LAB_MAX_EVENT_SUBSCRIBERS_PER_JOB",
        default_value_t = 64,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_event_subscribers_per_job: usize,

    /// Weights imports (`POST /v1/models/{model}/versions`) read at once; one more is answered
    /// with 429 and `Retry-After`. Each holds at most the file its header describes (and
    /// --max-weights-upload-bytes) while it is read and stored.
    #[arg(
        long,
        env = "MLP_LAB_MAX_CONCURRENT_IMPORTS",
        default_value_t = 4,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_concurrent_imports: usize,

    /// Seconds a request may take before it is answered with 408 (streams such as job events
    /// are bounded only until their headers are sent).
    #[arg(
        long = "request-timeout-secs",
        env = "MLP_LAB_REQUEST_TIMEOUT_SECS",
        default_value_t = 60,
        value_parser = RangedU64ValueParser::<u64>::new().range(1..)
    )]
    pub request_timeout_secs: u64,

    /// Predictions (`/v1` predict and `/v2` infer) computed at once, each once its body is
    /// read; more wait in a queue (`--max-queued-predictions`) [default: 4 × the number of
    /// CPUs].
    #[arg(
        long,
        env = "MLP_LAB_MAX_CONCURRENT_PREDICTIONS",
        default_value_t = default_concurrent_predictions(),
        hide_default_value = true,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_concurrent_predictions: usize,

    /// Predictions that may wait for a free slot, in arrival order; one more is answered at
    /// once with 429 and `Retry-After` (0: no queue).
    #[arg(
        long,
        env = "MLP_LAB_MAX_QUEUED_PREDICTIONS",
        default_value_t = 512,
        value_parser = RangedU64ValueParser::<usize>::new().range(0..=1_000_000)
    )]
    pub max_queued_predictions: usize,

    /// Milliseconds a queued prediction may wait for a slot before it is answered with 429
    /// and `Retry-After`.
    #[arg(
        long,
        env = "MLP_LAB_MAX_PREDICTION_WAIT_MS",
        default_value_t = 2000,
        value_parser = RangedU64ValueParser::<u64>::new().range(1..=3_600_000)
    )]
    pub max_prediction_wait_ms: u64,

    /// Which models compute small predictions (up to 16 rows each) that arrive together as one
    /// product, reading the weights once for all of them: `auto`, those whose weights fill at
    /// least three quarters of a core's L2 cache (a smaller network is read from it in a few
    /// microseconds, and batching costs more than it saves); `always`; `never`. Every row
    /// gets the same bits either way.
    #[arg(
        long,
        env = "MLP_LAB_BATCH_PREDICTIONS",
        value_enum,
        default_value_t = Batching::Auto
    )]
    pub batch_predictions: Batching,

    /// Seconds a client may take to send a request's line and headers (HTTP/1), and to say
    /// anything at all on a new connection; a slower or idle connection is closed.
    #[arg(
        long = "header-read-timeout-secs",
        env = "MLP_LAB_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = RangedU64ValueParser::<u64>::new().range(1..)
    )]
    pub header_read_timeout_secs: u64,

    /// Seconds a write to a client may wait for it to take any bytes; a client that takes none
    /// for that long (one that stopped reading an event stream, say) is disconnected.
    #[arg(
        long = "send-timeout-secs",
        env = "MLP_LAB_SEND_TIMEOUT_SECS",
        default_value_t = 60,
        value_parser = RangedU64ValueParser::<u64>::new().range(1..)
    )]
    pub send_timeout_secs: u64,

    /// Largest request line plus headers (bytes; KiB and MiB suffixes allowed); a larger
    /// head is answered with 431. Heads beyond this + 16 KiB (at least 64 KiB) are refused by
    /// the HTTP parser itself, with an empty 431.
    #[arg(long, env = "MLP_LAB_MAX_HEADER_BYTES", default_value_t = ByteSize(64 << 10))]
    pub max_header_bytes: ByteSize,

    /// Log format: human-readable text, or one JSON object a line. Filter with RUST_LOG.
    #[arg(long, env = "MLP_LAB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Limits on what a single request may ask for.
    #[command(flatten, next_help_heading = "Limits")]
    pub limits: Limits,

    /// Who may call what: bearer tokens and browser origins.
    #[command(flatten, next_help_heading = "Access")]
    pub access: Access,

    /// What to do instead of serving, if anything.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `mlp-lab` can do besides serving (which it does without a subcommand).
#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Copy every stored object (datasets, models, versions, jobs, experiments) from a data
    /// directory or database into an empty one, e.g. to move from --data-dir to
    /// --database-url without retraining. Stop the servers of both first; a data directory
    /// is locked while it is copied.
    Copy {
        /// Where from: a data directory, or a `postgres://` URL.
        #[arg(long, value_parser = Location::parse)]
        from: Location,
        /// Where to (empty): a data directory, or a `postgres://` URL.
        #[arg(long, value_parser = Location::parse)]
        to: Location,
    },
}

/// A data directory or a database, as `mlp-lab copy` names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A data directory.
    Dir(PathBuf),
    /// A PostgreSQL database.
    Database(DatabaseUrl),
}

impl Location {
    /// `postgres://…` or `postgresql://…` is a database; anything else a directory.
    ///
    /// # Errors
    /// Never; a `Result` for clap.
    pub fn parse(s: &str) -> Result<Location, std::convert::Infallible> {
        Ok(
            if s.starts_with("postgres://") || s.starts_with("postgresql://") {
                Location::Database(DatabaseUrl(s.to_owned()))
            } else {
                Location::Dir(PathBuf::from(s))
            },
        )
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dir(dir) => write!(f, "{}", dir.display()),
            Location::Database(url) => f.write_str(&url.redacted()),
        }
    }
}

/// A database URL. It may hold a password, so `Debug` shows it without one and it has no
/// `Display`; [`Self::expose`] gives the whole of it to the client that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Takes `s` as it is: the store checks it when it connects, in an error that does not
    /// repeat it (clap's would).
    ///
    /// # Errors
    /// Never; a `Result` for clap.
    pub fn unchecked(s: &str) -> Result<DatabaseUrl, std::convert::Infallible> {
        Ok(DatabaseUrl(s.trim().to_owned()))
    }

    /// The URL, password included; never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its password, for people: `scheme://user:secret@host/…` →
    /// `scheme://user:<redacted>@host/…`; a `key=value` string is not shown at all.
    #[must_use]
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "<redacted>".to_owned();
        };
        match rest.rsplit_once('@') {
            Some((user, host)) => match user.split_once(':') {
                Some((name, _)) => format!("{scheme}://{name}:<redacted>@{host}"),
                None => self.0.clone(),
            },
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl Config {
    /// A configuration for tests: in memory, on a free port, with the default limits. It
    /// reads no environment variable, so a stray `MLP_LAB_…` cannot change a test.
    #[must_use]
    pub fn for_tests() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_password_file: None,
            migrate_only: false,
            ephemeral: true,
            max_stored_file_bytes: ByteSize(1 << 30),
            max_running_jobs: 2,
            training_nice: 10,
            training_idle: true,
            serving_cpus: 1,
            training_threads: 0,
            max_queued_jobs: 1000,
            job_lease_secs: 10,
            replica_name: None,
            max_event_subscribers: 1024,
            max_event_subscribers_per_job: 64,
            max_concurrent_imports: 4,
            request_timeout_secs: 60,
            max_concurrent_predictions: 16,
            max_queued_predictions: 512,
            max_prediction_wait_ms: 2000,
            batch_predictions: Batching::Auto,
            header_read_timeout_secs: 10,
            send_timeout_secs: 60,
            max_header_bytes: ByteSize(64 << 10),
            log_format: LogFormat::Text,
            limits: Limits::default(),
            access: Access::default(),
            command: None,
        }
    }

    /// How long a request may take.
    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// This replica's name (`--replica-name`, or `<hostname>-<pid>`): the process id makes
    /// it unique among the processes of one host, the host name (a pod's name under
    /// Kubernetes) among hosts; and it stays the same for the life of the process.
    #[must_use]
    pub fn replica_name(&self) -> String {
        if let Some(name) = &self.replica_name {
            return name.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "mlp-lab".to_owned());
        format!("{host}-{}", std::process::id())
    }

    /// How long a replica holds a job without renewing (`--job-lease-secs`).
    #[must_use]
    pub fn job_lease(&self) -> Duration {
        Duration::from_secs(self.job_lease_secs)
    }

    /// How long a client may take to send a request's head.
    #[must_use]
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    /// How long a write may wait for the client to take any bytes.
    #[must_use]
    pub fn send_timeout(&self) -> Duration {
        Duration::from_secs(self.send_timeout_secs)
    }
}

/// Four predictions a CPU: a small prediction takes microseconds, so a few in flight per core
/// keep every core busy while others encode their answers, and a burst of large ones cannot
/// pile up on the blocking pool (the rest wait in the queue).
fn default_concurrent_predictions() -> usize {
    default_running_jobs().saturating_mul(4)
}

fn default_running_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Which models batch small predictions (`--batch-predictions`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batching {
    /// Models whose weights fill at least three quarters of a core's L2 cache.
    Auto,
    /// Every model.
    Always,
    /// None.
    Never,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

/// The limits of DESIGN.md ("Limits"); each is its own flag and `MLP_LAB_MAX_…` variable.
///
/// The `long` and `env` names are taken from [`Limit`], so the flag that parses a value and
/// the flag an error message recommends cannot drift apart.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct Limits {
    /// Largest request body for a dataset upload (bytes; KiB, MiB and GiB suffixes allowed).
    #[arg(long = Limit::DatasetUploadBytes.long(), env = Limit::DatasetUploadBytes.env(),
          default_value_t = ByteSize(64 << 20))]
    pub max_dataset_upload_bytes: ByteSize,

    /// Largest request body for a prediction (bytes; KiB, MiB and GiB suffixes allowed).
    #[arg(long = Limit::PredictBodyBytes.long(), env = Limit::PredictBodyBytes.env(),
          default_value_t = ByteSize(8 << 20))]
    pub max_predict_body_bytes: ByteSize,

    /// Largest request body for a weights import (bytes; KiB, MiB and GiB suffixes allowed);
    /// the default holds a network at the default --max-parameters in F32.
    #[arg(long = Limit::WeightsUploadBytes.long(), env = Limit::WeightsUploadBytes.env(),
          default_value_t = ByteSize(256 << 20))]
    pub max_weights_upload_bytes: ByteSize,

    /// Largest request body for every other route (bytes; KiB, MiB and GiB suffixes allowed).
    #[arg(long = Limit::BodyBytes.long(), env = Limit::BodyBytes.env(),
          default_value_t = ByteSize(1 << 20))]
    pub max_body_bytes: ByteSize,

    /// Most layers a network may have, input and output included.
    #[arg(long = Limit::Layers.long(), env = Limit::Layers.env(), default_value_t = 64,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_layers: usize,

    /// Most units one layer may have.
    #[arg(long = Limit::UnitsPerLayer.long(), env = Limit::UnitsPerLayer.env(),
          default_value_t = 65_536, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_units_per_layer: usize,

    /// Most trainable parameters a network may have.
    #[arg(long = Limit::Parameters.long(), env = Limit::Parameters.env(),
          default_value_t = 50_000_000, value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub max_parameters: u64,

    /// Most cells (rows × columns) a dataset may have: 64 million by default (256 MB of
    /// `f32`), so that an MNIST-sized dataset (60,000 × 785) fits.
    #[arg(long = Limit::DatasetCells.long(), env = Limit::DatasetCells.env(),
          default_value_t = 64_000_000, value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub max_dataset_cells: u64,

    /// Largest absolute value a feature or target may have.
    #[arg(long = Limit::AbsValue.long(), env = Limit::AbsValue.env(), default_value_t = 1e6,
          value_parser = parse_positive_finite)]
    pub max_abs_value: f64,

    /// Most epochs a training job may ask for.
    #[arg(long = Limit::Epochs.long(), env = Limit::Epochs.env(), default_value_t = 100_000,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub max_epochs: u64,

    /// Most rows one prediction request may send.
    #[arg(long = Limit::PredictRows.long(), env = Limit::PredictRows.env(),
          default_value_t = 100_000, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_predict_rows: usize,

    /// Largest page a listing may return.
    #[arg(long = Limit::PageSize.long(), env = Limit::PageSize.env(), default_value_t = 1_000,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_page_size: usize,

    /// Most jobs (cells × seeds) one experiment may start.
    #[arg(long = Limit::ExperimentJobs.long(), env = Limit::ExperimentJobs.env(),
          default_value_t = 200, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_experiment_jobs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_dataset_upload_bytes: ByteSize(64 << 20),
            max_predict_body_bytes: ByteSize(8 << 20),
            max_weights_upload_bytes: ByteSize(256 << 20),
            max_body_bytes: ByteSize(1 << 20),
            max_layers: 64,
            max_units_per_layer: 65_536,
            max_parameters: 50_000_000,
            max_dataset_cells: 64_000_000,
            max_abs_value: 1e6,
            max_epochs: 100_000,
            max_predict_rows: 100_000,
            max_page_size: 1_000,
            max_experiment_jobs: 200,
        }
    }
}

/// One configurable limit, by name: what an error says when a request hits it.
///
/// `Display` gives the way to raise it: `--max-layers / MLP_LAB_MAX_LAYERS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// [`Limits::max_dataset_upload_bytes`]
    DatasetUploadBytes,
    /// [`Limits::max_predict_body_bytes`]
    PredictBodyBytes,
    /// [`Limits::max_weights_upload_bytes`]
    WeightsUploadBytes,
    /// [`Limits::max_body_bytes`]
    BodyBytes,
    /// [`Limits::max_layers`]
    Layers,
    /// [`Limits::max_units_per_layer`]
    UnitsPerLayer,
    /// [`Limits::max_parameters`]
    Parameters,
    /// [`Limits::max_dataset_cells`]
    DatasetCells,
    /// [`Limits::max_abs_value`]
    AbsValue,
    /// [`Limits::max_epochs`]
    Epochs,
    /// [`Limits::max_predict_rows`]
    PredictRows,
    /// [`Limits::max_page_size`]
    PageSize,
    /// [`Limits::max_experiment_jobs`]
    ExperimentJobs,
}

impl Limit {
    /// Every limit, in the order of DESIGN.md.
    pub const ALL: [Limit; 13] = [
        Limit::DatasetUploadBytes,
        Limit::PredictBodyBytes,
        Limit::WeightsUploadBytes,
        Limit::BodyBytes,
        Limit::Layers,
        Limit::UnitsPerLayer,
        Limit::Parameters,
        Limit::DatasetCells,
        Limit::AbsValue,
        Limit::Epochs,
        Limit::PredictRows,
        Limit::PageSize,
        Limit::ExperimentJobs,
    ];

    /// The long flag without its leading dashes, e.g. `max-layers`.
    #[must_use]
    pub const fn long(self) -> &'static str {
        match self {
            Limit::DatasetUploadBytes => "max-dataset-upload-bytes",
            Limit::WeightsUploadBytes => "max-weights-upload-bytes",
            Limit::PredictBodyBytes => "max-predict-body-bytes",
            Limit::BodyBytes => "max-body-bytes",
            Limit::Layers => "max-layers",
            Limit::UnitsPerLayer => "max-units-per-layer",
            Limit::Parameters => "max-parameters",
            Limit::DatasetCells => "max-dataset-cells",
            Limit::AbsValue => "max-abs-value",
            Limit::Epochs => "max-epochs",
            Limit::PredictRows => "max-predict-rows",
            Limit::PageSize => "max-page-size",
            Limit::ExperimentJobs => "max-experiment-jobs",
        }
    }

    /// The environment variable, e.g. `MLP_LAB_MAX_LAYERS`.
    #[must_use]
    pub const fn env(self) -> &'static str {
        match self {
            Limit::DatasetUploadBytes => "MLP_LAB_MAX_DATASET_UPLOAD_BYTES",
            Limit::WeightsUploadBytes => "MLP_LAB_MAX_WEIGHTS_UPLOAD_BYTES",
            Limit::PredictBodyBytes => "MLP_LAB_MAX_PREDICT_BODY_BYTES",
            Limit::BodyBytes => "MLP_LAB_MAX_BODY_BYTES",
            Limit::Layers => "MLP_LAB_MAX_LAYERS",
            Limit::UnitsPerLayer => "MLP_LAB_MAX_UNITS_PER_LAYER",
            Limit::Parameters => "MLP_LAB_MAX_PARAMETERS",
            Limit::DatasetCells => "MLP_LAB_MAX_DATASET_CELLS",
            Limit::AbsValue => "MLP_LAB_MAX_ABS_VALUE",
            Limit::Epochs => "MLP_LAB_MAX_EPOCHS",
            Limit::PredictRows => "MLP_LAB_MAX_PREDICT_ROWS",
            Limit::PageSize => "MLP_LAB_MAX_PAGE_SIZE",
            Limit::ExperimentJobs => "MLP_LAB_MAX_EXPERIMENT_JOBS",
        }
    }

    /// What is limited, in words, e.g. `layers in a network`.
    #[must_use]
    pub const fn describe(self) -> &'static str {
        match self {
            Limit::DatasetUploadBytes => "request body size for dataset uploads",
            Limit::WeightsUploadBytes => "request body size for weights imports",
            Limit::PredictBodyBytes => "request body size for predictions",
            Limit::BodyBytes => "request body size",
            Limit::Layers => "layers in a network",
            Limit::UnitsPerLayer => "units in a layer",
            Limit::Parameters => "parameters in a network",
            Limit::DatasetCells => "cells in a dataset",
            Limit::AbsValue => "absolute value of a number in a dataset",
            Limit::Epochs => "epochs of a training job",
            Limit::PredictRows => "rows in a prediction request",
            Limit::PageSize => "page size of a listing",
            Limit::ExperimentJobs => "jobs (cells × seeds) of an experiment",
        }
    }

    /// Whether this limit is on the size of the request body (answered with 413) rather than
    /// on what the body asks for (answered with 422).
    #[must_use]
    pub const fn is_body_size(self) -> bool {
        matches!(
            self,
            Limit::DatasetUploadBytes
                | Limit::PredictBodyBytes
                | Limit::WeightsUploadBytes
                | Limit::BodyBytes
        )
    }

    /// The value in force, as a client would read it (`64`, `1 MiB`).
    #[must_use]
    pub fn value_in(self, limits: &Limits) -> String {
        match self {
            Limit::DatasetUploadBytes => limits.max_dataset_upload_bytes.to_string(),
            Limit::WeightsUploadBytes => limits.max_weights_upload_bytes.to_string(),
            Limit::PredictBodyBytes => limits.max_predict_body_bytes.to_string(),
            Limit::BodyBytes => limits.max_body_bytes.to_string(),
            Limit::Layers => limits.max_layers.to_string(),
            Limit::UnitsPerLayer => limits.max_units_per_layer.to_string(),
            Limit::Parameters => limits.max_parameters.to_string(),
            Limit::DatasetCells => limits.max_dataset_cells.to_string(),
            Limit::AbsValue => limits.max_abs_value.to_string(),
            Limit::Epochs => limits.max_epochs.to_string(),
            Limit::PredictRows => limits.max_predict_rows.to_string(),
            Limit::PageSize => limits.max_page_size.to_string(),
            Limit::ExperimentJobs => limits.max_experiment_jobs.to_string(),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--{} / {}", self.long(), self.env())
    }
}

/// A number of bytes, parsed from `1048576`, `1024KiB`, `1MiB` or `1GiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size as a `usize`, saturating on targets where it does not fit.
    #[must_use]
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, unit) in UNITS {
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (digits, unit) = UNITS
            .iter()
            .find_map(|&(suffix, unit)| s.strip_suffix(suffix).map(|d| (d.trim(), unit)))
            .unwrap_or((s, 1));
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{s}` is not a size; use e.g. 1048576, 1024KiB or 1MiB"))?;
        let bytes = n
            .checked_mul(unit)
            .ok_or_else(|| format!("`{s}` is too large"))?;
        if bytes == 0 {
            return Err("a size limit must be at least 1 byte".to_owned());
        }
        Ok(ByteSize(bytes))
    }
}

fn parse_positive_finite(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("`{s}` is not a positive finite number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn every_flag_has_a_long_name_an_env_var_and_help() {
        let command = Config::command();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(arg.get_long().is_some(), "{id} has no long flag");
            let env = arg.get_env().and_then(|e| e.to_str());
            assert!(
                env.is_some_and(|e| e.starts_with("MLP_LAB_")),
                "{id} has no MLP_LAB_ env var"
            );
            assert!(arg.get_help().is_some(), "{id} has no help");
        }
        command.debug_assert();
    }

    #[test]
    fn every_limit_names_a_flag_that_exists() {
        let command = Config::command();
        for limit in Limit::ALL {
            let arg = command
                .get_arguments()
                .find(|a| a.get_long() == Some(limit.long()))
                .unwrap_or_else(|| panic!("no flag --{}", limit.long()));
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(limit.env()));
        }
        assert_eq!(
            Limit::Layers.to_string(),
            "--max-layers / MLP_LAB_MAX_LAYERS"
        );
    }

    #[test]
    fn defaults_match_the_design_and_for_tests() {
        let parsed = Config::try_parse_from(["mlp-lab"]).expect("defaults parse");
        assert_eq!(parsed.limits, Limits::default());
        assert_eq!(parsed.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(parsed.max_queued_jobs, 1000);
        assert_eq!(
            (
                parsed.max_event_subscribers,
                parsed.max_event_subscribers_per_job
            ),
            (1024, 64)
        );
        assert_eq!(parsed.max_concurrent_imports, 4);
        assert!(parsed.max_running_jobs >= 1);
        let test = Config::for_tests();
        assert!(test.ephemeral);
        assert_eq!(test.addr.port(), 0);
        assert_eq!(Limit::BodyBytes.value_in(&test.limits), "1MiB");
    }

    #[test]
    fn flags_override_limits() {
        let config = Config::try_parse_from([
            "mlp-lab",
            "--max-layers",
            "8",
            "--max-body-bytes",
            "2MiB",
            "--max-abs-value",
            "10.5",
            "--ephemeral",
        ])
        .expect("parses");
        assert_eq!(config.limits.max_layers, 8);
        assert_eq!(config.limits.max_body_bytes, ByteSize(2 << 20));
        assert!((config.limits.max_abs_value - 10.5).abs() < f64::EPSILON);
        assert!(config.ephemeral);
    }

    #[test]
    fn nonsense_limits_are_refused() {
        for args in [
            ["mlp-lab", "--max-layers", "0"],
            ["mlp-lab", "--max-abs-value", "inf"],
            ["mlp-lab", "--max-body-bytes", "lots"],
            ["mlp-lab", "--max-running-jobs", "0"],
            ["mlp-lab", "--max-concurrent-predictions", "0"],
            ["mlp-lab", "--max-prediction-wait-ms", "0"],
            ["mlp-lab", "--max-queued-predictions", "-1"],
            ["mlp-lab", "--header-read-timeout-secs", "0"],
            ["mlp-lab", "--max-event-subscribers", "0"],
            ["mlp-lab", "--max-event-subscribers-per-job", "0"],
            ["mlp-lab", "--max-concurrent-imports", "0"],
            ["mlp-lab", "--send-timeout-secs", "0"],
        ] {
            assert!(Config::try_parse_from(args).is_err(), "{args:?} parsed");
        }
    }

    #[test]
    fn a_database_url_is_never_shown_with_its_password() {
        let config = Config::try_parse_from([
            "mlp-lab",
            "--database-url",
            "postgres://mlp:s3cret@db:5432/lab",
        ])
        .expect("parses");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://mlp:<redacted>@db:5432/lab"),
            "{shown}"
        );
        let keywords = DatabaseUrl::unchecked("host=db password=s3cret").expect("taken");
        assert!(!format!("{keywords:?}").contains("s3cret"));
    }

    #[test]
    fn migrate_only_needs_a_database_and_a_database_excludes_ephemeral() {
        assert!(Config::try_parse_from(["mlp-lab", "--migrate-only"]).is_err());
        assert!(Config::try_parse_from([
            "mlp-lab",
            "--ephemeral",
            "--database-url",
            "postgres://h/db"
        ])
        .is_err());
        let config = Config::try_parse_from([
            "mlp-lab",
            "--migrate-only",
            "--database-url",
            "postgres://h/db",
        ])
        .expect("parses");
        assert!(config.migrate_only && config.command.is_none());
    }

    #[test]
    fn copy_takes_a_directory_or_a_database_on_either_side() {
        let config = Config::try_parse_from([
            "mlp-lab",
            "copy",
            "--from",
            "./data",
            "--to",
            "postgres://h/db",
        ])
        .expect("parses");
        assert_eq!(
            config.command,
            Some(Command::Copy {
                from: Location::Dir(PathBuf::from("./data")),
                to: Location::Database(DatabaseUrl("postgres://h/db".to_owned())),
            })
        );
        assert!(Config::try_parse_from(["mlp-lab", "copy", "--from", "./data"]).is_err());
    }

    #[test]
    fn byte_sizes_parse_and_print_with_units() {
        assert_eq!("1048576".parse::<ByteSize>(), Ok(ByteSize(1 << 20)));
        assert_eq!("64MiB".parse::<ByteSize>(), Ok(ByteSize(64 << 20)));
        assert_eq!("3 KiB".parse::<ByteSize>(), Ok(ByteSize(3 << 10)));
        assert!("99999999999GiB".parse::<ByteSize>().is_err());
        assert!("0".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(8 << 20).to_string(), "8MiB");
        assert_eq!(ByteSize(1500).to_string(), "1500");
    }
}
