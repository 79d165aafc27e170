//! One span processor for the fleet's own steps on a finished span (cut long values, count it):
//! each step is an [`EndStep`], run by [`OnEnd`] before the span goes on to the next processor.

use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

/// Something done to (or with) every finished span before it is exported.
pub trait EndStep: Send + Sync + std::fmt::Debug {
    fn on_end(&self, span: &mut SpanData);
}

/// Runs `step` on each finished span, then hands the span to `inner`.
#[derive(Debug)]
pub struct OnEnd<S, P> {
    step: S,
    inner: P,
}

impl<S, P> OnEnd<S, P> {
    pub fn new(step: S, inner: P) -> Self {
        Self { step, inner }
    }
}

impl<S: EndStep, P: SpanProcessor> SpanProcessor for OnEnd<S, P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        self.step.on_end(&mut span);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
