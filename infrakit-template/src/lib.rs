//! # infrakit-template
//!
//! Templates for boot scripts and configuration files, in the spirit of InfraKit's template
//! engine: [handlebars](https://handlebarsjs.com/) templates, never HTML-escaped, with
//! InfraKit-style **globals** (`--global /cluster/name=x`), **includes and sources by URL**
//! (`file://`, `http(s)://`, or relative to the including template), and **metadata** lookups
//! through [`infrakit_core::Metadata`].
//!
//! ```
//! use infrakit_template::{Engine, Globals};
//! use serde_json::json;
//!
//! let engine = Engine::new()
//!     .with_globals(Globals::parse(["/cluster/name=mystack", "/cluster/size=5"])?);
//! let script = engine.render_str(
//!     r#"{{global "/cluster/workers" (sub (var "/cluster/size") 3)}}
//! echo "{{var "/cluster/name"}} has {{var "/cluster/workers"}} workers" && [ "{{role}}" = manager ]"#,
//!     &json!({"role": "manager"}),
//! )?;
//! assert_eq!(script, "\necho \"mystack has 2 workers\" && [ \"manager\" = manager ]");
//! # Ok::<(), infrakit_template::TemplateError>(())
//! ```
//!
//! ## Helpers
//!
//! | helper | example | what it does |
//! |---|---|---|
//! | `include` | `{{include "volume.sh"}}` | renders another template in a child scope (its globals stay inside); an optional second argument is its context |
//! | `source` | `{{source "common"}}` | renders another template in the current scope: the globals it sets become visible |
//! | `var` | `{{var "/cluster/name"}}` | reads a global (an error if unset, unless a default is given: `{{var "/x" "dflt"}}`) |
//! | `global` | `{{global "/cluster/size" 4}}` | sets a global in the current scope; renders nothing |
//! | `metadata` | `{{metadata "aws/instance/private_ip"}}` | reads a metadata path |
//! | `json`, `jsonDecode`, `yaml` | `{{json this}}` | encode / decode JSON, encode YAML |
//! | `default` | `{{default x "none"}}` | `x` unless it is missing, null or empty |
//! | `split`, `join`, `lines`, `index_of` | `{{join (split "a b" " ") ","}}` | string and list helpers |
//! | `add`, `sub`, `mul`, `div`, `mod` | `{{sub (var "/cluster/size") 3}}` | arithmetic (integers stay integers) |
//!
//! plus the handlebars built-ins (`if`, `each`, `with`, `eq`, `ne`, `gt`, `lt`, `and`, `or`,
//! `not`, `len`, ...). Register your own with [`Engine::register_helper`].
//!
//! ## Strictness
//!
//! A missing variable or global is an error naming it, the template's URL and the line; an
//! include cycle is an error naming the chain, never a stack overflow.

// Library code never unwraps a fallible value; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod engine;
mod error;
mod fetch;
mod globals;
mod helpers;
mod yaml;

pub use engine::Engine;
pub use error::TemplateError;
pub use fetch::Fetcher;
pub use globals::Globals;
pub use handlebars::{HelperDef, RenderError, RenderErrorReason};
