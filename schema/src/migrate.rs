//! Applies the embedded migrations (`migrations/V{n}__name.sql`) to a PostgreSQL database.

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Applies every migration not yet applied and returns the names of those it applied.
/// Safe to run concurrently with a running pipeline: migrations only add.
pub async fn run(client: &mut tokio_postgres::Client) -> Result<Vec<String>, refinery::Error> {
    let report = embedded::migrations::runner().run_async(client).await?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}
