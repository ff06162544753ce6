//! The one thing `egret autoscale` asks of Kubernetes: read and set the replica
//! count of the pipeline's StatefulSet, through its scale subresource
//! (`autoscaling/v1` Scale), as `kubectl scale` does.
//!
//! It talks plain HTTP to `kubectl proxy` beside it in the pod, which holds the
//! service account's token and the cluster's CA: the binary keeps no TLS stack
//! of its own for one request every few seconds.

use serde::Deserialize;

/// A StatefulSet's scale subresource.
#[derive(Debug, Clone)]
pub struct StatefulSet {
    client: reqwest::Client,
    url: String,
}

/// Its replica count: wanted, and pods there now (terminating ones included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub wanted: u32,
    pub running: u32,
}

#[derive(Deserialize)]
struct ScaleObject {
    #[serde(default)]
    spec: Replicas,
    #[serde(default)]
    status: Replicas,
}

/// A zero count is left out of the object (`omitempty`).
#[derive(Deserialize, Default)]
struct Replicas {
    #[serde(default)]
    replicas: u32,
}

impl StatefulSet {
    /// `api` is the API server's address as the proxy serves it (`http://127.0.0.1:8001`).
    pub fn new(api: &str, namespace: &str, name: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
        Ok(StatefulSet { client, url: format!("{}/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}/scale", api.trim_end_matches('/')) })
    }

    pub async fn scale(&self) -> anyhow::Result<Scale> {
        let response = self.client.get(&self.url).send().await.map_err(|e| anyhow::anyhow!("GET {}: {e}", self.url))?;
        let object: ScaleObject = checked(response, &self.url).await?.json().await.map_err(|e| anyhow::anyhow!("GET {}: not a Scale: {e}", self.url))?;
        Ok(Scale { wanted: object.spec.replicas, running: object.status.replicas })
    }

    pub async fn set_replicas(&self, replicas: u32) -> anyhow::Result<()> {
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        let request = self.client.patch(&self.url).header(reqwest::header::CONTENT_TYPE, "application/merge-patch+json").body(patch.to_string());
        let response = request.send().await.map_err(|e| anyhow::anyhow!("PATCH {}: {e}", self.url))?;
        checked(response, &self.url).await?;
        Ok(())
    }
}

/// The response, or an error with the API server's status and message (a
/// missing RBAC rule reads as 403 with the verb and resource it lacks).
async fn checked(response: reqwest::Response, url: &str) -> anyhow::Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    anyhow::bail!("{url}: {status}: {}", body.chars().take(500).collect::<String>())
}
