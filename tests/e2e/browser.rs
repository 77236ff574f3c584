//! A real browser for the web page's tests: Debian's headless Chromium driven over
//! WebDriver by its own chromedriver, one of each per test.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::wait_until;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium session; its chromedriver is killed when this is dropped.
pub struct Browser {
    pub client: Client,
    driver: std::process::Child,
}

impl Browser {
    pub async fn start() -> Browser {
        // The WebDriver client speaks rustls; ring is the provider the rest of tbot uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "the web page's tests need Debian's chromium and chromium-driver \
             ({CHROMIUM}, {CHROMEDRIVER}): run scripts/test as root, which installs them, \
             or apt-get install chromium chromium-driver"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        // Its own process group, so that the browser it starts goes with it.
        let driver = std::process::Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"]
            }),
        );
        let client = wait_until(
            "chromedriver to take a session",
            Duration::from_secs(30),
            || {
                let capabilities = capabilities.clone();
                let url = url.clone();
                async move {
                    ClientBuilder::rustls()
                        .expect("a TLS setup for the WebDriver client")
                        .capabilities(capabilities)
                        .connect(&url)
                        .await
                        .ok()
                }
            },
        )
        .await;
        Browser { client, driver }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// Logs in through the page's form.
    pub async fn log_in(&self, server_url: &str, name: &str, password: &str) {
        self.goto(&format!("{server_url}/login")).await;
        self.fill("input[name=name]", name).await;
        self.fill("input[name=password]", password).await;
        self.click("form.login button[type=submit]").await;
        wait_until(
            "the jobs page after logging in",
            Duration::from_secs(10),
            || async { self.text("h1").await.filter(|title| title == "Jobs") },
        )
        .await;
    }

    pub async fn fill(&self, css: &str, text: &str) {
        self.find(css).await.send_keys(text).await.expect("typed");
    }

    /// Clicks the element matching `css`, again if the page replaced it meanwhile (the
    /// live tiles); a click that happened is never repeated.
    pub async fn click(&self, css: &str) {
        wait_until(
            &format!("a click on {css}"),
            Duration::from_secs(10),
            || async {
                match self.find(css).await.click().await {
                    Ok(()) => Some(()),
                    Err(fantoccini::error::CmdError::Standard(err))
                        if err.error == fantoccini::error::ErrorStatus::StaleElementReference =>
                    {
                        None
                    }
                    Err(err) => panic!("click {css}: {err}"),
                }
            },
        )
        .await;
    }

    /// Ticks a checkbox and waits until the page shows it ticked: the page re-renders
    /// its tiles every two seconds, so a click can land on one just replaced.
    pub async fn tick(&self, css: &str) {
        wait_until(
            &format!("{css} ticked"),
            Duration::from_secs(10),
            || async {
                let boxed = self.client.find(Locator::Css(css)).await.ok()?;
                if boxed.is_selected().await.ok()? {
                    return Some(());
                }
                let _ = boxed.click().await;
                None
            },
        )
        .await;
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no {css} on the page: {err}"))
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map_or(0, |found| found.len())
    }

    /// The text of the first element matching `css`, if there is one now.
    pub async fn text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// An attribute of the first element matching `css`, if both are there now.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.attr(name).await.ok().flatten()
    }

    /// Waits at most `limit` until the element matching `css` has attribute `name` set
    /// to `value`.
    pub async fn wait_for_attr(&self, css: &str, name: &str, value: &str, limit: Duration) {
        wait_until(
            &format!("{css} to have {name}={value:?}"),
            limit,
            || async { (self.attr(css, name).await.as_deref() == Some(value)).then_some(()) },
        )
        .await;
    }

    /// Waits until the element matching `css` has text containing `part`.
    pub async fn wait_for_text(&self, css: &str, part: &str) -> String {
        wait_until(
            &format!("{css} to say {part:?}"),
            Duration::from_secs(20),
            || async { self.text(css).await.filter(|text| text.contains(part)) },
        )
        .await
    }

    /// Saves what the browser shows as a PNG.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(path, png).expect("the screenshot is written");
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    /// Chromedriver and every browser process it started, also when a test panics.
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.driver);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.driver.wait();
    }
}
