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
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("could not read {} as UTF-8 text", file.display()))?;
            let ids: Vec<String> = text
                .lines()
                .map(|l| {
                    l.trim_start_matches('\u{feff}')
                        .split(',')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .trim_matches('"')
                        .to_owned()
                })
                .enumerate()
                .filter(|(i, id)| !(*i == 0 && (id == "id" || id == "profile_id")))
                .map(|(_, id)| id)
                .collect();
            let (segment, unknown) = engine::segments::import_static(&db, &name, ids).await?;
            println!(
                "Segment {} now has {} members.",
                segment.name, segment.member_count
            );
            if !unknown.is_empty() {
                println!(
                    "{} ids are not profiles and were skipped: {}",
                    unknown.len(),
                    unknown
                        .iter()
                        .take(20)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
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
