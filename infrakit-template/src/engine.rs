//! The template engine: a handlebars registry with InfraKit's helpers, a cache of parsed
//! templates by URL, and the per-render scope stack.

use crate::error::TemplateError;
use crate::fetch::{Fetcher, cwd_url, to_url};
use crate::globals::Globals;
use crate::helpers;
use handlebars::{
    Context, Handlebars, HelperDef, Output, RenderContext, RenderError, RenderErrorReason,
    Renderable, StringOutput, Template,
};
use infrakit_core::Metadata;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use url::Url;

/// How deep includes may nest (a cycle is reported before this is reached).
pub(crate) const MAX_DEPTH: usize = 64;

/// One template being rendered, innermost last.
pub(crate) struct Frame {
    pub(crate) url: Url,
    /// `None` for a sourced template: its globals go to the scope of whoever sourced it.
    pub(crate) globals: Option<BTreeMap<String, Value>>,
}

thread_local! {
    /// The scopes of the render running on this thread. Rendering is synchronous, so a
    /// thread-local stack is exact and costs no locking.
    pub(crate) static STACK: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    /// A structured error raised by a helper, returned instead of handlebars' text.
    pub(crate) static PENDING: RefCell<Option<TemplateError>> = const { RefCell::new(None) };
}

/// Records a structured error and returns the handlebars error that unwinds the render.
pub(crate) fn raise(e: TemplateError) -> RenderError {
    let text = e.to_string();
    PENDING.with(|p| *p.borrow_mut() = Some(e));
    RenderErrorReason::Other(text).into()
}

/// What the helpers share with the engine.
pub(crate) struct Shared {
    cache: RwLock<HashMap<Url, Arc<Template>>>,
    /// Resolved include references: (including URL, reference) → URL.
    resolved: RwLock<HashMap<(Url, String), Url>>,
    fetcher: RwLock<Fetcher>,
    metadata: RwLock<Option<Arc<dyn Metadata>>>,
}

impl Shared {
    /// The parsed template at `url`, fetched and parsed once.
    pub(crate) fn load(&self, url: &Url) -> Result<Arc<Template>, TemplateError> {
        if let Some(t) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
        {
            return Ok(Arc::clone(t));
        }
        let text = self
            .fetcher
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .fetch(url)?;
        let t = Arc::new(compile(&text, url.as_str())?);
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.clone(), Arc::clone(&t));
        Ok(t)
    }

    /// Resolves an include reference against the including template's URL (memoized).
    pub(crate) fn resolve(&self, base: &Url, reference: &str) -> Result<Url, TemplateError> {
        let k = (base.clone(), reference.to_owned());
        if let Some(u) = self
            .resolved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&k)
        {
            return Ok(u.clone());
        }
        let u = crate::fetch::resolve(base, reference)?;
        self.resolved
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, u.clone());
        Ok(u)
    }

    pub(crate) fn metadata(&self) -> Option<Arc<dyn Metadata>> {
        self.metadata
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn compile(text: &str, name: &str) -> Result<Template, TemplateError> {
    Template::compile_with_name(text, name.to_owned()).map_err(|e| {
        let (line, column) = e.pos().map_or((None, None), |(l, c)| (Some(l), Some(c)));
        TemplateError::Parse {
            url: name.to_owned(),
            line,
            column,
            message: e.reason().to_string(),
        }
    })
}

/// Renders a parsed template with a fresh render context.
pub(crate) fn render_template(
    t: &Template,
    r: &Handlebars<'_>,
    ctx: &Context,
    out: &mut dyn Output,
) -> Result<(), RenderError> {
    let mut rc = RenderContext::new(t.name.as_ref());
    t.render(r, ctx, &mut rc, out)
}

/// Renders templates. Cheap to clone; clones share the template cache.
///
/// - Strict: a missing variable or global is an error naming it, the URL and the line.
/// - Nothing is HTML-escaped: the output is a script or a config file.
/// - Templates are fetched and parsed once per URL and cached (see
///   [`clear_cache`](Self::clear_cache)).
///
/// `render_*` are blocking (they may fetch over HTTP and read metadata); from async code use
/// [`render_url_async`](Self::render_url_async), which runs them on a blocking thread.
#[derive(Clone)]
pub struct Engine {
    registry: Arc<Handlebars<'static>>,
    shared: Arc<Shared>,
    globals: BTreeMap<String, Value>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("globals", &self.globals)
            .finish_non_exhaustive()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// An engine with InfraKit's helpers, strict mode on and no escaping.
    pub fn new() -> Self {
        let shared = Arc::new(Shared {
            cache: RwLock::new(HashMap::new()),
            resolved: RwLock::new(HashMap::new()),
            fetcher: RwLock::new(Fetcher::default()),
            metadata: RwLock::new(None),
        });
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        helpers::register(&mut registry, &shared);
        Self {
            registry: Arc::new(registry),
            shared,
            globals: BTreeMap::new(),
        }
    }

    /// Globals every render starts with (e.g. from `--global` flags).
    #[must_use]
    pub fn with_globals(mut self, globals: Globals) -> Self {
        self.globals.extend(globals.into_map());
        self
    }

    /// The metadata the `metadata` helper reads.
    #[must_use]
    pub fn with_metadata(self, metadata: Arc<dyn Metadata>) -> Self {
        *self
            .shared
            .metadata
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(metadata);
        self
    }

    /// Replaces the fetcher (e.g. for another HTTP timeout).
    #[must_use]
    pub fn with_fetcher(self, fetcher: Fetcher) -> Self {
        *self
            .shared
            .fetcher
            .write()
            .unwrap_or_else(|p| p.into_inner()) = fetcher;
        self
    }

    /// Registers a helper of your own (before the engine is cloned, or the clone gets a copy
    /// of the registry).
    ///
    /// ```
    /// use infrakit_template::Engine;
    /// use handlebars::{Context, Handlebars, Helper, HelperResult, Output, RenderContext};
    ///
    /// fn shout(h: &Helper, _: &Handlebars, _: &Context, _: &mut RenderContext, out: &mut dyn Output) -> HelperResult {
    ///     let text = h.param(0).and_then(|p| p.value().as_str()).unwrap_or_default();
    ///     out.write(&text.to_uppercase())?;
    ///     Ok(())
    /// }
    /// let engine = Engine::new().register_helper("shout", Box::new(shout));
    /// assert_eq!(engine.render_str("{{shout \"hi\"}}", &serde_json::json!({})).unwrap(), "HI");
    /// ```
    #[must_use]
    pub fn register_helper(
        mut self,
        name: &str,
        helper: Box<dyn HelperDef + Send + Sync + 'static>,
    ) -> Self {
        Arc::make_mut(&mut self.registry).register_helper(name, helper);
        self
    }

    /// Forgets every parsed template, so the next render fetches again.
    pub fn clear_cache(&self) {
        self.shared
            .cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Renders the template at `url` (a URL, or a path relative to the current directory).
    pub fn render_url(&self, url: &str, context: &Value) -> Result<String, TemplateError> {
        let url = to_url(url)?;
        let template = self.shared.load(&url)?;
        self.render(&template, url, context)
    }

    /// Renders template text; relative includes resolve against the current directory.
    pub fn render_str(&self, text: &str, context: &Value) -> Result<String, TemplateError> {
        self.render_str_at(text, cwd_url()?, context)
    }

    /// Renders template text as if it were at `base` (for relative includes and errors).
    pub fn render_str_at(
        &self,
        text: &str,
        base: Url,
        context: &Value,
    ) -> Result<String, TemplateError> {
        let template = compile(text, base.as_str())?;
        self.render(&template, base, context)
    }

    /// [`render_url`](Self::render_url) on a blocking thread, for async callers.
    pub async fn render_url_async(
        &self,
        url: &str,
        context: &Value,
    ) -> Result<String, TemplateError> {
        let this = self.clone();
        let url = url.to_owned();
        let context = context.clone();
        tokio::task::spawn_blocking(move || this.render_url(&url, &context))
            .await
            .map_err(|e| TemplateError::Render {
                url: String::new(),
                line: None,
                column: None,
                message: format!("render task failed: {e}"),
            })?
    }

    fn render(
        &self,
        template: &Template,
        url: Url,
        context: &Value,
    ) -> Result<String, TemplateError> {
        let ctx = Context::wraps(context).map_err(|e| TemplateError::Render {
            url: url.to_string(),
            line: None,
            column: None,
            message: e.to_string(),
        })?;
        let root = Frame {
            url: url.clone(),
            globals: Some(self.globals.clone()),
        };
        // Save and restore, so a render started from inside a helper does not clobber ours.
        let saved = STACK.with(|s| std::mem::replace(&mut *s.borrow_mut(), vec![root]));
        let saved_pending = PENDING.with(|p| p.borrow_mut().take());
        let mut out = StringOutput::new();
        let result = render_template(template, &self.registry, &ctx, &mut out);
        STACK.with(|s| *s.borrow_mut() = saved);
        let pending = PENDING.with(|p| std::mem::replace(&mut *p.borrow_mut(), saved_pending));
        match result {
            Ok(()) => out.into_string().map_err(|e| TemplateError::Render {
                url: url.to_string(),
                line: None,
                column: None,
                message: e.to_string(),
            }),
            Err(e) => Err(pending.unwrap_or_else(|| render_error(&url, e))),
        }
    }
}

fn render_error(root: &Url, e: RenderError) -> TemplateError {
    let message = match e.reason() {
        RenderErrorReason::MissingVariable(Some(name)) => format!("missing variable `{name}`"),
        RenderErrorReason::MissingVariable(None) => "missing variable".to_owned(),
        RenderErrorReason::Other(text) => text.clone(),
        other => other.to_string(),
    };
    TemplateError::Render {
        url: e.template_name.clone().unwrap_or_else(|| root.to_string()),
        line: e.line_no,
        column: e.column_no,
        message,
    }
}
