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
