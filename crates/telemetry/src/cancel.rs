//! What a span records when the work it covers is dropped half-way (the caller gave up).

/// Calls `on_cancel` with the span if it is dropped while still armed.
pub(crate) struct CancelGuard {
    span: tracing::Span,
    on_cancel: Option<fn(&tracing::Span)>,
}

impl CancelGuard {
    pub(crate) fn new(span: tracing::Span, on_cancel: fn(&tracing::Span)) -> Self {
        Self {
            span,
            on_cancel: Some(on_cancel),
        }
    }

    /// The work finished: record nothing on drop.
    pub(crate) fn disarm(&mut self) {
        self.on_cancel = None;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(on_cancel) = self.on_cancel.take() {
            on_cancel(&self.span);
        }
    }
}
