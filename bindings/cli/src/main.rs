//! `edgestore`: inspect and operate an edgestore database from the shell.

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
                println!("{}", show(&v));
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
                println!("{}\t{}", show(&k), show(&v));
            }
            Ok(())
        }
        Cmd::Stats => {
            let db = open(&cli.db)?;
            let m = db.metrics();
            println!("segments            {}", m.segments);
            println!("segment bytes       {}", m.segment_bytes);
            println!("memtable bytes      {}", m.memtable_bytes);
            let v = db.verify()?;
            println!("records in segments {}", v.segment_records);
            println!("wal files           {}", v.wal_files);
            println!("(write amplification is counted per process; see `edgestore demo` for a measured run)");
            Ok(())
        }
        Cmd::Flush => open(&cli.db)?.flush_to_segments(),
        Cmd::Compact => {
            let s = open(&cli.db)?.compact_once()?;
            println!(
                "cohorts collected {}  segments removed {}  segments written {}  bytes written {}  bytes reclaimed {}  live records relocated {}",
                s.cohorts_collected, s.segments_removed, s.segments_written, s.bytes_written, s.bytes_reclaimed, s.live_records_relocated
            );
            Ok(())
        }
        Cmd::Verify => {
            let r = open(&cli.db)?.verify()?;
            println!(
                "ok: {} segments ({} records), {} WAL files ({} batches): every checksum verified",
                r.segments, r.segment_records, r.wal_files, r.wal_batches
            );
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgestore: {e}");
            ExitCode::FAILURE
        }
    }
}
