//! The cronjob controller.

use crate::Context;

pub async fn run(ctx: Context) {
    let _ = ctx;
    std::future::pending::<()>().await
}
