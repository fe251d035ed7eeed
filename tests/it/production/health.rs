//! `/healthz`: 200 while the database answers, 503 when it is gone.

use super::*;

both_databases! {
    async fn healthz_answers_while_the_database_does(backend: Backend) {
        let w = World::new(&backend).await;
        let mut node = w.polling_node(&w.base, Duration::from_secs(5));
        let url = node.url("/healthz");
        eventually("the HTTP server answers", || async {
            reqwest::get(&url).await.is_ok()
        })
        .await;
        assert_eq!(get(&url).await, (200, "ok\n".to_owned()));
        let (status, _) = get(&node.url("/nowhere")).await;
        assert_eq!(status, 404);
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_503_when_the_database_is_gone() {
    let Some(backend) =
        Backend::postgres("it::production::health::healthz_answers_503_when_the_database_is_gone")
    else {
        return;
    };
    let w = World::new(&backend).await;
    let mut node = w.polling_node(&w.base, Duration::from_secs(5));
    let url = node.url("/healthz");
    eventually("healthy", || async { get(&url).await.0 == 200 }).await;
    w.db.close().await;
    let Backend::Postgres(admin) = &backend else {
        unreachable!()
    };
    let name = w
        ._test_db
        .url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let pool = sqlx::PgPool::connect(admin)
        .await
        .expect("admin connection");
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop the bot's database");
    pool.close().await;
    eventually("unhealthy", || async { get(&url).await.0 == 503 }).await;
    node.kill().await;
}
