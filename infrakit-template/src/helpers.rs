//! InfraKit's template helpers.

use crate::engine::{Frame, MAX_DEPTH, STACK, Shared, raise, render_template};
use crate::error::TemplateError;
use crate::globals::key;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason, ScopedJson,
};
use serde_json::{Number, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) fn register(r: &mut Handlebars<'static>, shared: &Arc<Shared>) {
    r.register_helper(
        "include",
        Box::new(Include {
            shared: Arc::clone(shared),
            same_scope: false,
        }),
    );
    r.register_helper(
        "source",
        Box::new(Include {
            shared: Arc::clone(shared),
            same_scope: true,
        }),
    );
    r.register_helper(
        "metadata",
        Box::new(MetadataHelper {
            shared: Arc::clone(shared),
        }),
    );
    r.register_helper("var", Box::new(Var));
    r.register_helper("global", Box::new(SetGlobal));
    for (name, f) in VALUE_HELPERS {
        r.register_helper(name, Box::new(ValueHelper { name, f: *f }));
    }
}

fn other(msg: String) -> RenderError {
    RenderErrorReason::Other(msg).into()
}

/// `include` (child scope) and `source` (same scope).
struct Include {
    shared: Arc<Shared>,
    same_scope: bool,
}

impl HelperDef for Include {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let name = h.name();
        let reference = h
            .param(0)
            .and_then(|p| p.value().as_str())
            .ok_or_else(|| other(format!("{name} needs a URL: {{{{{name} \"file.sh\"}}}}")))?;
        let base = STACK
            .with(|s| s.borrow().last().map(|f| f.url.clone()))
            .ok_or_else(|| other(format!("{name} used outside a render")))?;
        let url = self.shared.resolve(&base, reference).map_err(raise)?;
        let chain: Option<Vec<String>> = STACK.with(|s| {
            let s = s.borrow();
            s.iter().position(|f| f.url == url).map(|i| {
                s[i..]
                    .iter()
                    .map(|f| f.url.to_string())
                    .chain(std::iter::once(url.to_string()))
                    .collect()
            })
        });
        if let Some(chain) = chain {
            return Err(raise(TemplateError::Cycle { chain }));
        }
        if STACK.with(|s| s.borrow().len()) >= MAX_DEPTH {
            return Err(other(format!("includes nested deeper than {MAX_DEPTH}")));
        }
        let template = self.shared.load(&url).map_err(raise)?;
        let child_ctx;
        let ctx = match h.param(1) {
            Some(p) => {
                child_ctx = Context::wraps(p.value())?;
                &child_ctx
            }
            None => ctx,
        };
        STACK.with(|s| {
            s.borrow_mut().push(Frame {
                url,
                globals: (!self.same_scope).then(BTreeMap::new),
            })
        });
        let result = render_template(&template, r, ctx, out);
        STACK.with(|s| s.borrow_mut().pop());
        result
    }
}

/// `var "/path" [default]`: reads a global, innermost scope first.
struct Var;

impl HelperDef for Var {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let path = h
            .param(0)
            .and_then(|p| p.value().as_str())
            .ok_or_else(|| other("var needs a path: {{var \"/cluster/name\"}}".into()))?;
        let k = key(path);
        let found = STACK.with(|s| {
            s.borrow()
                .iter()
                .rev()
                .filter_map(|f| f.globals.as_ref())
                .find_map(|g| g.get(&*k).cloned())
        });
        match (found, h.param(1)) {
            (Some(v), _) => Ok(ScopedJson::Derived(v)),
            (None, Some(default)) => Ok(ScopedJson::Derived(default.value().clone())),
            (None, None) => Err(other(format!(
                "global `/{k}` is not set (set it with --global /{k}=... or {{{{global \"/{k}\" ...}}}})"
            ))),
        }
    }
}

/// `global "/path" value`: sets a global in the current scope; renders nothing.
struct SetGlobal;

impl HelperDef for SetGlobal {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        _: &mut dyn Output,
    ) -> HelperResult {
        let path = h
            .param(0)
            .and_then(|p| p.value().as_str())
            .ok_or_else(|| other("global needs a path: {{global \"/cluster/size\" 4}}".into()))?;
        let value = h
            .param(1)
            .ok_or_else(|| other(format!("global {path:?} needs a value")))?;
        if value.is_value_missing() {
            return Err(other(format!(
                "global {path:?}: the value `{}` is missing",
                value.relative_path().map_or("?", String::as_str)
            )));
        }
        let value = value.value().clone();
        let k = key(path);
        STACK.with(|s| {
            if let Some(g) = s
                .borrow_mut()
                .iter_mut()
                .rev()
                .find_map(|f| f.globals.as_mut())
            {
                g.insert(k.into_owned(), value);
            }
        });
        Ok(())
    }
}

/// `metadata "path"`: reads through the engine's `Metadata`.
struct MetadataHelper {
    shared: Arc<Shared>,
}

impl HelperDef for MetadataHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let path = h.param(0).and_then(|p| p.value().as_str()).ok_or_else(|| {
            other("metadata needs a path: {{metadata \"aws/instance/private_ip\"}}".into())
        })?;
        let md = self.shared.metadata().ok_or_else(|| {
            other(format!(
                "metadata {path:?}: no metadata source is configured"
            ))
        })?;
        match block_on(md.get(path)) {
            Ok(Some(v)) => Ok(ScopedJson::Derived(v)),
            Ok(None) => match h.param(1) {
                Some(default) => Ok(ScopedJson::Derived(default.value().clone())),
                None => Err(other(format!("metadata path {path:?} not found"))),
            },
            Err(e) => Err(other(format!("metadata {path:?}: {e}"))),
        }
    }
}

/// Runs a future to completion from the (synchronous) render.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| h.block_on(f))
        }
        _ => futures::executor::block_on(f),
    }
}

type ValueFn = fn(&[Value]) -> Result<Value, String>;

/// A composable helper computing a value from its arguments.
struct ValueHelper {
    name: &'static str,
    f: ValueFn,
}

impl HelperDef for ValueHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let args: Vec<Value> = h
            .params()
            .iter()
            .map(|p| {
                if p.is_value_missing() {
                    Value::Null
                } else {
                    p.value().clone()
                }
            })
            .collect();
        (self.f)(&args)
            .map(ScopedJson::Derived)
            .map_err(|e| other(format!("{}: {e}", self.name)))
    }
}

const VALUE_HELPERS: &[(&str, ValueFn)] = &[
    ("json", json),
    ("jsonDecode", json_decode),
    ("yaml", yaml),
    ("default", default),
    ("split", split),
    ("join", join),
    ("lines", lines),
    ("index_of", index_of),
    ("add", |a| arith(a, i64::checked_add, |x, y| x + y)),
    ("sub", |a| arith(a, i64::checked_sub, |x, y| x - y)),
    ("mul", |a| arith(a, i64::checked_mul, |x, y| x * y)),
    ("div", |a| arith(a, i64::checked_div, |x, y| x / y)),
    ("mod", |a| arith(a, i64::checked_rem, |x, y| x % y)),
];

fn arg(args: &[Value], i: usize) -> Result<&Value, String> {
    args.get(i)
        .ok_or_else(|| format!("argument {} is required", i + 1))
}

fn text(args: &[Value], i: usize) -> Result<&str, String> {
    arg(args, i)?
        .as_str()
        .ok_or_else(|| format!("argument {} must be a string, not {}", i + 1, args[i]))
}

fn json(args: &[Value]) -> Result<Value, String> {
    serde_json::to_string(arg(args, 0)?)
        .map(Value::String)
        .map_err(|e| e.to_string())
}

fn json_decode(args: &[Value]) -> Result<Value, String> {
    serde_json::from_str(text(args, 0)?).map_err(|e| e.to_string())
}

fn yaml(args: &[Value]) -> Result<Value, String> {
    Ok(Value::String(crate::yaml::to_yaml(arg(args, 0)?)))
}

fn default(args: &[Value]) -> Result<Value, String> {
    let v = arg(args, 0)?;
    let empty = match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    Ok(if empty {
        arg(args, 1)?.clone()
    } else {
        v.clone()
    })
}

fn split(args: &[Value]) -> Result<Value, String> {
    let s = text(args, 0)?;
    let sep = text(args, 1)?;
    Ok(Value::Array(
        s.split(sep).map(|p| Value::String(p.to_owned())).collect(),
    ))
}

fn join(args: &[Value]) -> Result<Value, String> {
    let items = arg(args, 0)?
        .as_array()
        .ok_or_else(|| "argument 1 must be a list".to_owned())?;
    let sep = text(args, 1)?;
    let parts: Vec<String> = items
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    Ok(Value::String(parts.join(sep)))
}

fn lines(args: &[Value]) -> Result<Value, String> {
    Ok(Value::Array(
        text(args, 0)?
            .lines()
            .map(|l| Value::String(l.to_owned()))
            .collect(),
    ))
}

fn index_of(args: &[Value]) -> Result<Value, String> {
    let hay = arg(args, 0)?;
    let needle = arg(args, 1)?;
    let i: i64 = match hay {
        Value::Array(items) => items
            .iter()
            .position(|v| v == needle)
            .map_or(-1, |i| i as i64),
        Value::String(s) => {
            let n = needle
                .as_str()
                .ok_or("argument 2 must be a string to search a string")?;
            s.find(n).map_or(-1, |i| s[..i].chars().count() as i64)
        }
        other => {
            return Err(format!(
                "argument 1 must be a list or a string, not {other}"
            ));
        }
    };
    Ok(Value::from(i))
}

fn number(args: &[Value], i: usize) -> Result<Number, String> {
    match arg(args, i)? {
        Value::Number(n) => Ok(n.clone()),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map(Number::from)
            .or_else(|_| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .ok_or(())
            })
            .map_err(|()| format!("argument {} ({s:?}) is not a number", i + 1)),
        Value::Null => Err(format!("argument {} is missing", i + 1)),
        other => Err(format!("argument {} ({other}) is not a number", i + 1)),
    }
}

fn arith(
    args: &[Value],
    int: fn(i64, i64) -> Option<i64>,
    float: fn(f64, f64) -> f64,
) -> Result<Value, String> {
    let a = number(args, 0)?;
    let b = number(args, 1)?;
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return int(x, y)
            .map(Value::from)
            .ok_or_else(|| format!("{x} and {y}: overflow or division by zero"));
    }
    let (x, y) = (
        a.as_f64().unwrap_or(f64::NAN),
        b.as_f64().unwrap_or(f64::NAN),
    );
    Number::from_f64(float(x, y))
        .map(Value::Number)
        .ok_or_else(|| format!("{x} and {y}: the result is not a finite number"))
}
