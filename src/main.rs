//! `hypermount`: the command line.
//!
//! Library errors are typed; here they become `anyhow` errors with context naming the
//! key or path, printed as one line with exit status 1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod demo;
mod keyarg;
mod mountcmd;
mod network;
mod progress;
mod storage;
mod sync;

use keyarg::DriveRef;

#[derive(Parser, Debug)]
#[command(
    name = "hypermount",
    version,
    about = "Mount Dat2 hyperdrives as folders"
)]
struct Cli {
    /// Where feeds are stored (default: $HYPERMOUNT_STORAGE, else the XDG data dir).
    #[arg(long, global = true)]
    storage: Option<PathBuf>,
    /// DHT bootstrap nodes, HOST:PORT (default: the public hyperswarm nodes).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        env = "HYPERMOUNT_BOOTSTRAP"
    )]
    bootstrap: Vec<String>,
    /// Replicate with a peer at this address (repeatable).
    #[arg(long, global = true)]
    connect: Vec<SocketAddr>,
    /// Accept peers on this address (port 0 picks one; the bound address is printed).
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Do not use the DHT: peers only from --connect/--listen.
    #[arg(long, global = true, env = "HYPERMOUNT_NO_DHT", value_parser = clap::builder::BoolishValueParser::new())]
    no_dht: bool,
    /// Send our LAN address with DHT announces, so peers on the same network connect
    /// directly (off by default, as in hyperswarm).
    #[arg(long, global = true)]
    announce_local: bool,
    /// Also find peers on the local network by multicast DNS (224.0.0.251:5353), as
    /// Node hyperswarm peers do. Off by default: it multicasts on every interface.
    #[arg(long, global = true, env = "HYPERMOUNT_MDNS", value_parser = clap::builder::BoolishValueParser::new())]
    mdns: bool,
    /// Transports to dial and accept peers on, comma-separated: tcp, utp (uTP shares the
    /// DHT's UDP port and reaches peers behind NATs after a holepunch).
    #[arg(
        long,
        global = true,
        env = "HYPERMOUNT_TRANSPORTS",
        default_value = "tcp,utp"
    )]
    transports: String,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The README's main job: make a drive from a sample folder, seed it on loopback,
    /// mount it from a second storage, `ls -l` and read through the mount, clean up.
    Demo,
    /// Create a new writable drive (optionally filled from a folder); prints its key.
    Create {
        /// Folder to import into the new drive.
        #[arg(long)]
        import: Option<PathBuf>,
    },
    /// Sync a folder into a writable drive: adds, changes and deletions.
    Import { key: String, src: PathBuf },
    /// Copy a drive, a version (KEY+V) or a subtree (KEY/PATH) out to a folder.
    Export { key: String, dest: PathBuf },
    /// Download a whole drive and its mounts, stay live and serve it (read-only mirror).
    Mirror {
        key: String,
        /// Run in the background (log in the storage folder).
        #[arg(long)]
        daemon: bool,
    },
    /// Serve own and mirrored drives (all of them if none are named) until stopped.
    Seed { keys: Vec<String> },
    /// Key, discovery key, version, size and peers of a drive.
    Info {
        key: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List a folder of a drive.
    Ls {
        key: String,
        /// Long listing: mode, size, modification time.
        #[arg(short = 'l')]
        long: bool,
    },
    /// Print a file of a drive.
    Cat { key: String },
    /// Versions of a drive and what changed in each.
    Log { key: String },
    /// Mount a drive (KEY) or one of its versions (KEY+V, read-only) at a folder.
    ///
    /// Own drives mount read-write; drives of others are fetched from peers
    /// (DHT, --connect, --listen) as they are read. Serves until SIGINT/SIGTERM or `unmount`.
    Mount {
        key: String,
        mountpoint: PathBuf,
        /// Refuse writes even to an own drive.
        #[arg(long)]
        read_only: bool,
        /// Return once the mount is up and serve it in the background.
        #[arg(long)]
        daemon: bool,
    },
    /// Unmount a drive (stops the process serving it) or clear a stale mount.
    Unmount { mountpoint: PathBuf },
    /// The Hyperswarm DHT.
    Dht {
        #[command(subcommand)]
        command: DhtCommand,
    },
}

#[derive(Subcommand, Debug)]
enum DhtCommand {
    /// Run a bootstrap node on --listen HOST:PORT (joining any --bootstrap nodes);
    /// prints `ready <port>`.
    Bootstrap,
}

fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    // fuser retries the unmount our mount guard already did and logs the EINVAL as an
    // error, and logs replies to requests the kernel dropped while unmounting (ENOENT);
    // both are harmless, so hidden unless debugging.
    let directives = if verbose >= 2 {
        level.to_string()
    } else {
        format!("{level},fuser::mnt::fuse_pure=off,fuser::reply=off")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HYPERMOUNT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directives));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hypermount: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo => return demo::run(cli.storage).await,
            Command::Dht {
                command: DhtCommand::Bootstrap,
            } => return mountcmd::dht_bootstrap(cli.listen, &cli.bootstrap).await,
            _ => {}
        }
        let env = commands::Env::new(commands::GlobalOpts {
            storage: cli.storage,
            bootstrap: cli.bootstrap,
            connect: cli.connect,
            listen: cli.listen,
            no_dht: cli.no_dht,
            announce_local: cli.announce_local,
            mdns: cli.mdns,
            transports: network::parse_transports(&cli.transports)
                .map_err(|e| anyhow::anyhow!("--transports {}: {e}", cli.transports))?,
            quiet: cli.quiet,
        })?;
        match cli.command {
            Command::Demo | Command::Dht { .. } => Ok(()),
            Command::Create { import } => commands::create(&env, import).await,
            Command::Import { key, src } => commands::import(&env, key.parse()?, src).await,
            Command::Export { key, dest } => commands::export(&env, key.parse()?, dest).await,
            Command::Mirror { key, daemon } => commands::mirror(&env, key.parse()?, daemon).await,
            Command::Seed { keys } => {
                let keys = keys
                    .iter()
                    .map(|k| k.parse::<DriveRef>())
                    .collect::<Result<Vec<_>, _>>()?;
                commands::seed(&env, keys).await
            }
            Command::Info { key, json } => commands::info(&env, key.parse()?, json).await,
            Command::Ls { key, long } => commands::ls(&env, key.parse()?, long).await,
            Command::Cat { key } => commands::cat(&env, key.parse()?).await,
            Command::Log { key } => commands::log(&env, key.parse()?).await,
            Command::Mount {
                key,
                mountpoint,
                read_only,
                daemon,
            } => mountcmd::mount(&env, key.parse()?, mountpoint, read_only, daemon).await,
            Command::Unmount { mountpoint } => mountcmd::unmount(&env, mountpoint).await,
        }
    });
    // Connections and waits may still hold runtime tasks; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hypermount: {e:#}");
            ExitCode::FAILURE
        }
    }
}
