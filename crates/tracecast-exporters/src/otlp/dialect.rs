//! [`OtlpDialect`]: how one platform's flavour of OTLP differs from the default mapping.

use std::borrow::Cow;

use tracecast_model::trace::TraceView;

use super::attributes::{AttributeKey, Attributes, Element, SpanRole};

/// `service.name` of the resource: OpenRouter's value, so that dashboards and queries written
/// for OpenRouter's Broadcast keep working.
pub const SERVICE_NAME: &str = "openrouter";
/// `service.version` of the resource: the value OpenRouter sends. It versions the shape of the
/// traces, not the tracecast binary.
pub const SERVICE_VERSION: &str = "1.0.0";
/// Name of the instrumentation scope (OpenRouter's).
pub const SCOPE_NAME: &str = "openrouter";

/// Where a span sits in what one generation emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanSlot {
    pub role: SpanRole,
    /// The top-most span emitted for this generation (the intermediate span when there is one,
    /// else the generation span). It carries `openrouter.trace.name`.
    pub top_most: bool,
    /// The span is sent without a parent: it is top-most and the dialect sends no parent for
    /// the generation ([`OtlpDialect::parent_span_id`] is `None`), so it is a root of the trace.
    pub is_root: bool,
}

impl SpanSlot {
    /// `trace.parent_span_id` when this span is the generation's root although the user gave
    /// a parent: the dialect did not send that parent as the OTLP parent, so the dialect should
    /// carry it some other way (its own link attribute, or metadata).
    pub fn unsent_parent<'a>(&self, view: &TraceView<'a>) -> Option<&'a str> {
        if self.is_root {
            view.parent_span_id()
        } else {
            None
        }
    }
}

/// For a platform that stores spans but documents no place of its own for a foreign parent:
/// puts the parent that was not sent as the OTLP parent ([`SpanSlot::unsent_parent`]) in
/// `openrouter.trace.parent_span_id` on the top-most span, so the generation stays a root in
/// the platform's trace list and the user's parent is still searchable.
pub fn carry_unsent_parent<'a>(
    view: &TraceView<'a>,
    slot: SpanSlot,
    attrs: &mut Attributes<'a, '_>,
) {
    if let Some(parent) = slot.unsent_parent(view) {
        attrs.string(super::keys::OPENROUTER_TRACE_PARENT_SPAN_ID, parent);
    }
}

/// A platform's flavour of OTLP: the hooks the shared encoder calls while it builds the
/// spans of one generation. Every method has a default; [`DefaultDialect`] (webhook,
/// otel-collector) keeps them all but [`Self::generation_span_id`].
///
/// Order of calls for one generation: the resource attributes are built (`service.name`,
/// `service.version`, `openrouter.trace.id`, each through [`Self::attribute_key`]), then
/// [`Self::resource_attributes`]; then for each span, its name from [`Self::span_name`], the
/// standard attributes through [`Self::attribute_key`], then [`Self::span_attributes`].
pub trait OtlpDialect: Send + Sync {
    /// `service.name` of the resource.
    fn service_name(&self) -> Cow<'static, str> {
        Cow::Borrowed(SERVICE_NAME)
    }

    /// Name of the instrumentation scope.
    fn scope_name(&self) -> Cow<'static, str> {
        Cow::Borrowed(SCOPE_NAME)
    }

    /// Version of the instrumentation scope (empty: not sent).
    fn scope_version(&self) -> Cow<'static, str> {
        Cow::Borrowed("")
    }

    /// The OTLP parent of the generation's top-most span. The default is OpenRouter's rule,
    /// [`TraceView::otlp_parent_span_id`]: `trace.parent_span_id` as given (hashed unless it is
    /// 16 hex characters), right for a collector or webhook whose user owns the other spans.
    ///
    /// A platform that stores spans should only send a parent that can name a span the user
    /// sent it ([`TraceView::otlp_linkable_parent_span_id`] for OTLP-native ids), and return
    /// `None` otherwise: a parent the platform never receives leaves an orphan that trace lists
    /// hide (and LangSmith drops). The top-most span is then a root ([`SpanSlot::is_root`]) and
    /// [`SpanSlot::unsent_parent`] gives the dialect the parent to carry in its own form.
    fn parent_span_id(&self, view: &TraceView<'_>) -> Option<[u8; 8]> {
        view.otlp_parent_span_id()
    }

    /// The OTLP span id of the generation span. The default is [`TraceView::otlp_span_id`],
    /// derived from the generation id (OpenRouter's rule).
    fn generation_span_id(&self, view: &TraceView<'_>) -> [u8; 8] {
        view.otlp_span_id()
    }

    /// The name of a span. The default is [`default_span_name`].
    fn span_name<'a>(&self, view: &TraceView<'a>, slot: SpanSlot) -> Cow<'a, str> {
        default_span_name(view, slot)
    }

    /// Whether a standard attribute is kept (the default), renamed or dropped. Called for every
    /// standard attribute (see [`super::keys`]; prefixed families such as
    /// `trace.metadata.<key>` are passed whole).
    fn attribute_key(&self, element: Element, key: &str) -> AttributeKey {
        let _ = (element, key);
        AttributeKey::Keep
    }

    /// Adds platform attributes to the resource (keys are taken verbatim). Values may borrow
    /// from the view.
    fn resource_attributes<'a>(&self, view: &TraceView<'a>, attrs: &mut Attributes<'a, '_>) {
        let _ = (view, attrs);
    }

    /// Adds (or removes) attributes of a span after the standard ones (keys are taken
    /// verbatim). Values may borrow from the view.
    fn span_attributes<'a>(
        &self,
        view: &TraceView<'a>,
        slot: SpanSlot,
        attrs: &mut Attributes<'a, '_>,
    ) {
        let _ = (view, slot, attrs);
    }
}

/// The mapping OpenRouter documents for generic OTLP destinations (webhook, otel-collector).
/// One addition: a generation that OTLP ingest took from an app's own trace keeps the app's
/// span id ([`TraceView::otlp_app_span_id`]), so the collector or webhook that also receives
/// the app's other spans shows the generation as that span, under its parent, with its
/// children; other generations get the derived id.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultDialect;

impl OtlpDialect for DefaultDialect {
    fn generation_span_id(&self, view: &TraceView<'_>) -> [u8; 8] {
        view.otlp_app_span_id()
            .unwrap_or_else(|| view.otlp_span_id())
    }
}

/// Default span names:
/// - the intermediate span is named `trace.span_name`;
/// - the generation span is named `trace.generation_name`. When it is a root of the trace (no
///   intermediate span, no parent sent) and has no `generation_name` of its own, it is named
///   `trace.trace_name` instead, so that a trace list shows the trace's name.
///
/// `generation_name` and `trace_name` both default to the model slug.
pub fn default_span_name<'a>(view: &TraceView<'a>, slot: SpanSlot) -> Cow<'a, str> {
    Cow::Borrowed(match slot.role {
        SpanRole::Intermediate => view.span_name().unwrap_or_else(|| view.generation_name()),
        SpanRole::Generation => {
            let own = view.generation_name();
            if slot.is_root && own == view.model() {
                view.trace_name()
            } else {
                own
            }
        }
    })
}
