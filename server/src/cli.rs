//! Command-line interface: `server` (serve), `server user create`.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use engine::password::Password;
use engine::users::{self, Email, Role};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "server",
    version,
    about = "Segment Export: export customer segments to Constant Contact lists."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the web application (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Import data.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Run exports from the command line.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Generate demo profiles and segments (deterministic for a seed).
    DemoData {
        /// How many profiles.
        #[arg(long, default_value_t = 10_000)]
        profiles: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import profiles from a CSV file (header row, UTF-8), upserting by id.
    Profiles {
        file: std::path::PathBuf,
        /// The column that holds the profile id.
        #[arg(long, default_value = "id")]
        id_column: String,
    },
    /// Create or replace a static segment from a CSV of profile ids (the
    /// first column; a header row named `id` or `profile_id` is skipped).
    Segment {
        name: String,
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// List the exports with their last run.
    List,
    /// Run an export now and wait for it; prints progress and the result.
    Run {
        /// The export's id (see `server export list`).
        id: engine::ExportId,
        /// Send every contact, not only new and changed ones.
        #[arg(long)]
        full: bool,
        /// Print only the finished run, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Plan a run without sending anything: adds, updates, removals,
    /// skips, API calls and the expected duration.
    DryRun {
        id: engine::ExportId,
        /// Print only the finished run, as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from the terminal (asked twice)
    /// or, when stdin is not a terminal, from its first line.
    Create {
        #[arg(long)]
        email: String,
        /// admin, contributor or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => crate::serve(cli.config).await,
        Command::Migrate => {
            crate::open_database(&cli.config).await?;
            println!("Database is up to date.");
            Ok(())
        }
        Command::Export { command } => export(&cli.config, command).await,
        Command::Import {
            command: ImportCommand::Profiles { file, id_column },
        } => {
            let db = crate::open_database(&cli.config).await?;
            let input = std::fs::File::open(&file)
                .with_context(|| format!("could not open {}", file.display()))?;
            let report = engine::profiles::import_csv(&db, input, &id_column).await?;
            println!(
                "Imported {} of {} rows from {}; {} rejected.",
                report.imported,
                report.rows,
                file.display(),
                report.rejected
            );
            for e in &report.errors {
                println!("  line {}: {}", e.line, e.reason);
            }
            if report.rejected as usize > report.errors.len() {
                println!(
                    "  … and {} more",
                    report.rejected as usize - report.errors.len()
                );
            }
            Ok(())
        }
        Command::Import {
            command: ImportCommand::Segment { name, file },
        } => {
            let db = crate::open_database(&cli.config).await?;
            let input = std::fs::File::open(&file)
                .with_context(|| format!("could not open {}", file.display()))?;
            let source = file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let import =
                engine::segments::import_static_csv(&db, None, &name, &source, input).await?;
            println!(
                "Segment {} now has {} members.",
                import.segment.name, import.segment.member_count
            );
            if import.unknown > 0 {
                println!(
                    "{} ids are not profiles and were skipped: {}",
                    import.unknown,
                    import.unknown_sample.join(", ")
                );
            }
            Ok(())
        }
        Command::DemoData { profiles, seed } => {
            let db = crate::open_database(&cli.config).await?;
            engine::demo::generate(&db, profiles, seed).await?;
            println!("Generated {profiles} demo profiles (seed {seed}) and the demo segments.");
            Ok(())
        }
        Command::User {
            command: UserCommand::Create { email, role },
        } => {
            let email = Email::parse(&email)?;
            let role = Role::parse(&role)?;
            let password = Password::parse(&read_password()?)?;
            let db = crate::open_database(&cli.config).await?;
            let user = if users::needs_setup(&db).await? {
                if role != Role::Admin {
                    bail!("No administrator exists yet: the first user must be created with --role admin.");
                }
                users::create_first_admin(&db, &email, &password).await?
            } else {
                users::create_user(&db, None, &email, role, &password).await?
            };
            println!("Created {} ({}).", user.email, user.role);
            Ok(())
        }
    }
}

fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password("Password: ").context("could not read the password")?;
        let second = rpassword::prompt_password("Repeat the password: ")
            .context("could not read the password")?;
        if first != second {
            bail!("The passwords do not match.");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("could not read the password from stdin")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

async fn export(config: &Config, command: ExportCommand) -> anyhow::Result<()> {
    use engine::runs::{self, Mode, Status, Trigger};
    let db = crate::open_database(config).await?;
    let (id, mode, json) = match command {
        ExportCommand::List => {
            let latest = runs::latest(&db).await?;
            for e in engine::exports::list(&db).await? {
                let last = latest
                    .iter()
                    .find(|r| r.export_id == e.id)
                    .map(|r| format!("last run #{} {}", r.id, r.status.as_str()))
                    .unwrap_or_else(|| String::from("never run"));
                println!(
                    "{:>5}  {}  -> list {} ({}) via {}; {}{}",
                    e.id,
                    e.name,
                    e.list_name,
                    e.list_id,
                    e.connection_name.as_deref().unwrap_or("(no connection)"),
                    last,
                    if e.enabled { "" } else { "; disabled" }
                );
            }
            return Ok(());
        }
        ExportCommand::Run { id, full, json } => {
            (id, if full { Mode::Full } else { Mode::Incremental }, json)
        }
        ExportCommand::DryRun { id, json } => (id, Mode::DryRun, json),
    };
    let say = |line: String| {
        if !json {
            println!("{line}");
        }
    };
    let run = runs::trigger(&db, id, Trigger::Cli, mode, None).await?;
    say(format!(
        "Run #{} queued for export {}.",
        run.id, run.export_name
    ));
    let executor = crate::executor(config, db.clone())?;
    let mine = runs::claim_run(&db, run.id, &executor.worker, executor.settings.lease_ms).await?;
    let work = {
        let executor = executor.clone();
        tokio::spawn(async move {
            if mine {
                executor.execute(run.id).await
            } else {
                Ok(())
            }
        })
    };
    if !mine {
        say(String::from(
            "A server's worker took the run; following it.",
        ));
    }
    let mut last = String::new();
    let done = loop {
        let now = runs::get(&db, run.id)
            .await?
            .context("the run disappeared")?;
        let line = format!(
            "{} {}: read {} of {}, sent {}, unchanged {}, skipped {}",
            now.status.as_str(),
            now.phase.as_deref().unwrap_or(""),
            now.counts.read,
            now.total
                .map(|t| t.to_string())
                .unwrap_or_else(|| String::from("?")),
            now.counts.sent,
            now.counts.unchanged,
            now.counts.skipped()
        );
        if line != last {
            say(format!("  {line}"));
            last = line;
        }
        if !now.status.is_active() {
            break now;
        }
        // Back in the queue to be resumed later (the quota, a failure that
        // passes): a server's worker resumes it; this command is done.
        if now.status == Status::Queued && now.not_before.is_some() && work.is_finished() {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    work.await??;
    if done.status == Status::Queued {
        println!(
            "Run #{} is waiting: {}",
            done.id,
            done.message.as_deref().unwrap_or("")
        );
        bail!("the run has not finished; a server's worker resumes it");
    }
    let c = &done.counts;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "run": done.id,
                "status": done.status.as_str(),
                "message": done.message,
                "total": done.total,
                "counts": c,
            })
        );
        return match done.status {
            Status::Succeeded | Status::PartiallySucceeded => Ok(()),
            other => bail!("the run ended {}", other.as_str()),
        };
    }
    println!(
        "Run #{} {}: {}",
        done.id,
        done.status.as_str().replace('_', " "),
        done.message.as_deref().unwrap_or("")
    );
    println!(
        "  read {}, sent {} (new {}, changed {}), unchanged {}, accepted {}, rejected {}, unsubscribed {}, removed {}",
        c.read, c.sent, c.adds, c.updates, c.unchanged, c.accepted, c.rejected, c.unsubscribed, c.removed
    );
    println!(
        "  skipped: no email {}, invalid email {}, duplicate email {}, invalid value {}, unsubscribed {}",
        c.skipped_no_email,
        c.skipped_invalid_email,
        c.skipped_duplicate_email,
        c.skipped_invalid_value,
        c.skipped_unsubscribed
    );
    println!(
        "  API calls {}, daily quota left {}",
        c.api_calls, c.quota_left
    );
    if mode == Mode::DryRun {
        println!("  expected duration {} s", c.eta_seconds);
    }
    match done.status {
        Status::Succeeded | Status::PartiallySucceeded => Ok(()),
        other => bail!("the run ended {}", other.as_str()),
    }
}
