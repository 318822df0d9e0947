//! HTTP faults: a rule set on a running HTTP fault proxy (the `http_proxy` target). The proxy
//! runs inside the runner, so a dead runner leaves nothing behind; revert removes the rule by
//! name, and open keep-alive connections go on without it.

use std::sync::Arc;

use async_trait::async_trait;

use super::net::{HttpProxyControl, HttpRule};
use super::{BoxError, Fault, FaultError, Guard, InjectCx, Revert, RevertSpec};

/// One rule on one HTTP proxy target.
#[derive(Debug, Clone)]
pub struct HttpRuleFault {
    /// The target's name.
    pub target: String,
    /// The key users wrote (`http-abort`, `tls-mitm`, …).
    pub kind: &'static str,
    /// The proxy.
    pub proxy: Arc<dyn HttpProxyControl>,
    /// The rule; its name is unique on the proxy.
    pub rule: HttpRule,
}

struct RemoveRule {
    proxy: Arc<dyn HttpProxyControl>,
    name: String,
}

#[async_trait]
impl Fault for HttpRuleFault {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        cx.announce(
            &self.target,
            self.kind,
            RevertSpec::InProcessToxics {
                target: self.target.clone(),
                toxics: vec![self.rule.name.clone()],
            },
        )?;
        if let Err(e) = self.proxy.set_rule(self.rule.clone()).await {
            return Err(FaultError::Apply {
                message: format!("{} on `{}`: {e}", self.kind, self.target),
                undone: true,
            });
        }
        Ok(cx.guard(Box::new(RemoveRule {
            proxy: self.proxy.clone(),
            name: self.rule.name.clone(),
        })))
    }
}

#[async_trait]
impl Revert for RemoveRule {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        Ok(if self.proxy.remove_rule(&self.name).await? {
            format!("removed HTTP rule {}", self.name)
        } else {
            format!("HTTP rule {} already gone", self.name)
        })
    }
}
