//! `edgestore`: inspect and operate an edgestore database from the shell.

/// `println!` for a tool whose output is often piped: a reader that went
/// away (`edgestore scan ns | head`) ends the process quietly instead of a
/// panic; any other write error is reported. (The database needs no
/// orderly close: every acknowledged write survives a process exit.)
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::output_failed(e)
        }
    }};
}

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgestore::{EdgestoreConfig, Engine};

#[derive(Parser)]
#[command(name = "edgestore", version, about = "Operate an edgestore database")]
struct Cli {
    /// Database directory.
    #[arg(long, global = true, default_value = "edgestore-data")]
    db: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Store a value (durably).
    Put {
        ns: String,
        key: String,
        value: String,
        /// Seconds until the value expires (0 = never).
        #[arg(long, default_value_t = 0)]
        ttl: u32,
    },
    /// Print a value.
    Get { ns: String, key: String },
    /// Delete a key.
    Delete { ns: String, key: String },
    /// List keys and values of a namespace, optionally from START to END (exclusive)
    /// or with a PREFIX.
    Scan {
        ns: String,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        prefix: Option<String>,
        /// Stop after this many rows.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Sizes, segment counts and write amplification.
    Stats,
    /// Write the memtable out to segments.
    Flush,
    /// Run one compaction cycle.
    Compact,
    /// Check every checksum in the database.
    Verify,
    /// Print the Merkle tree root of a namespace's live pairs (what two
    /// replicas compare to sync), or with --level every node of that level.
    Merkle {
        ns: String,
        /// Levels below the root (16^depth leaves), 1 to 4.
        #[arg(long, default_value_t = edgestore::MERKLE_DEFAULT_DEPTH)]
        depth: u32,
        /// Print each node of this level (0 = root, depth = leaves) as
        /// `index hash`.
        #[arg(long)]
        level: Option<u32>,
    },
    /// Run a simulated week of sensor data with mixed TTLs and show what
    /// deathtime-cohort compaction does (uses ./edgestore-demo unless --db is given).
    Demo {
        /// Simulated days.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Sensors writing once a minute.
        #[arg(long, default_value_t = 12)]
        sensors: u32,
    },
}

fn open(db: &PathBuf) -> Result<Engine, edgestore::Error> {
    Engine::open(EdgestoreConfig::new(db))
}

fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => {
            bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .chars()
                .collect::<String>()
                + " (hex)"
        }
    }
}

fn run(cli: Cli) -> Result<(), edgestore::Error> {
    match cli.cmd {
        Cmd::Put {
            ns,
            key,
            value,
            ttl,
        } => open(&cli.db)?.put_with_ttl(ns.as_bytes(), key.as_bytes(), value.as_bytes(), ttl),
        Cmd::Get { ns, key } => match open(&cli.db)?.get(ns.as_bytes(), key.as_bytes())? {
            Some(v) => {
                out!("{}", show(&v));
                Ok(())
            }
            None => Err(edgestore::Error::InvalidArgument(format!(
                "key {key:?} not found in namespace {ns:?}"
            ))),
        },
        Cmd::Delete { ns, key } => open(&cli.db)?.delete(ns.as_bytes(), key.as_bytes()),
        Cmd::Scan {
            ns,
            start,
            end,
            prefix,
            limit,
        } => {
            let db = open(&cli.db)?;
            let iter = match prefix {
                Some(p) => db.scan_prefix(ns.as_bytes(), p.as_bytes())?,
                None => db.scan(
                    ns.as_bytes(),
                    start.as_deref().unwrap_or("").as_bytes(),
                    end.as_deref().map(str::as_bytes),
                )?,
            };
            for item in iter.take(limit.unwrap_or(usize::MAX)) {
                let (k, v) = item?;
                out!("{}\t{}", show(&k), show(&v));
            }
            Ok(())
        }
        Cmd::Stats => {
            let db = open(&cli.db)?;
            let m = db.metrics();
            out!("segments            {}", m.segments);
            out!("segment bytes       {}", m.segment_bytes);
            out!("memtable bytes      {}", m.memtable_bytes);
            let v = db.verify()?;
            out!("records in segments {}", v.segment_records);
            out!("wal files           {}", v.wal_files);
            out!("(write amplification is counted per process; see `edgestore demo` for a measured run)");
            Ok(())
        }
        Cmd::Flush => open(&cli.db)?.flush_to_segments(),
        Cmd::Compact => {
            let s = open(&cli.db)?.compact_once()?;
            out!(
                "cohorts collected {}  segments removed {}  segments written {}  bytes written {}  bytes reclaimed {}  live records relocated {}",
                s.cohorts_collected, s.segments_removed, s.segments_written, s.bytes_written, s.bytes_reclaimed, s.live_records_relocated
            );
            Ok(())
        }
        Cmd::Verify => {
            let r = open(&cli.db)?.verify()?;
            out!(
                "ok: {} segments ({} records), {} WAL files ({} batches): every checksum verified",
                r.segments,
                r.segment_records,
                r.wal_files,
                r.wal_batches
            );
            Ok(())
        }
        Cmd::Merkle { ns, depth, level } => {
            let tree = open(&cli.db)?.merkle_tree(ns.as_bytes(), depth)?;
            let hex = |h: &[u8; 32]| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
            match level {
                None => out!(
                    "root {}  depth {}  entries {}",
                    hex(&tree.root()),
                    tree.depth(),
                    tree.entries()
                ),
                Some(l) => {
                    let nodes = tree.level(l).ok_or_else(|| {
                        edgestore::Error::InvalidArgument(format!(
                            "level {l} is outside 0..={depth}"
                        ))
                    })?;
                    for (i, h) in nodes.iter().enumerate() {
                        out!("{i} {}", hex(h));
                    }
                }
            }
            Ok(())
        }
        Cmd::Demo { days, sensors } => {
            let dir = if cli.db.as_os_str() == "edgestore-data" {
                PathBuf::from("edgestore-demo")
            } else {
                cli.db
            };
            demo::run(&dir, days, sensors)
        }
    }
}

/// See [`out!`].
fn output_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("edgestore: writing output: {e}");
    std::process::exit(1)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgestore: {e}");
            ExitCode::FAILURE
        }
    }
}
