//! `skiff datastore …`: moving a cluster between datastores.

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum DatastoreCommand {
    /// Copy every object of a stopped single-node cluster into etcd.
    ///
    /// Stop the server first. The target prefix must be empty. Afterwards every
    /// resourceVersion a client remembers from the old datastore is older than the
    /// new datastore's compacted revision, so watches get 410 Gone and clients relist.
    ///
    /// Example:
    ///   skiff datastore migrate --from sqlite:/var/lib/skiff --to etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379
    #[command(verbatim_doc_comment)]
    Migrate(MigrateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    /// Source: `sqlite:DATA_DIR` (the server's data directory, holding state.db).
    #[arg(long)]
    pub from: String,
    /// Target: `etcd://host:port,host:port[/prefix]`.
    #[arg(long)]
    pub to: String,
    #[command(flatten)]
    pub etcd_tls: crate::server::EtcdTlsArgs,
}

pub async fn run(cmd: DatastoreCommand) -> Result<()> {
    match cmd {
        DatastoreCommand::Migrate(args) => migrate(args).await,
    }
}

async fn migrate(args: MigrateArgs) -> Result<()> {
    let _ = args;
    anyhow::bail!("not implemented yet")
}
