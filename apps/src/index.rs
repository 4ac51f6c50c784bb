//! The index page of the all-apps server.

use askama::Template;
use askama_web::WebTemplate;

/// One app on the index page.
#[derive(Debug)]
pub struct AppLink {
    /// Where it lives.
    pub href: &'static str,
    /// Its name.
    pub name: &'static str,
    /// One line on what it shows.
    pub about: &'static str,
}

/// The apps this build serves.
pub const APPS: &[AppLink] = &[
    AppLink {
        href: "/chat",
        name: "Chat",
        about: "Rooms, presence and typing; history that survives restarts; nothing lost or doubled when you reconnect.",
    },
    AppLink {
        href: "/dashboard",
        name: "System dashboard",
        about: "Live CPU, memory, disks, network and processes from one sampler; alerts you acknowledge; audited control actions.",
    },
    AppLink {
        href: "/exec",
        name: "Remote execution",
        about: "Run sh, bash or Python in a sandbox; output streams live and replays exactly after a reload; type into stdin; interrupt or kill.",
    },
    AppLink {
        href: "/sampling",
        name: "MCP sampling console",
        about: "An MCP server whose tools ask the connected clients' models; send a sampling request to a client by hand and watch it complete.",
    },
    AppLink {
        href: "/basic/",
        name: "SSE test page",
        about: "One-way streaming: numbered events, reconnects and Last-Event-ID resume, live in your browser.",
    },
    AppLink {
        href: "/bidi/",
        name: "Bidirectional server",
        about: "Requests down the stream, answers back by POST, matched by id. Run bidi-client and trigger against it.",
    },
];

/// The page.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "index.html")]
pub struct IndexPage {
    /// What to list.
    pub apps: &'static [AppLink],
}

/// `GET /`.
pub async fn page() -> IndexPage {
    IndexPage { apps: APPS }
}
