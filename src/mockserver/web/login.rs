//! Logging in and out of the web page. The log-in form carries a token of its own in a
//! cookie and a field (double submit), so no other site can log a browser in.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::{CookieJar, Form};
use maud::html;
use serde::Deserialize;

use super::super::auth::{random_token, session_cookie, Accounts, SESSION_COOKIE};
use super::super::AppState;
use super::layout::page;
use super::visitor::Visitor;

const LOGIN_COOKIE: &str = "tbot_login";

#[derive(Deserialize)]
pub struct LogInForm {
    name: String,
    password: String,
    login_token: String,
}

#[derive(Deserialize)]
pub struct LogOutForm {
    csrf: String,
}

/// The log-in form, with a fresh token in its cookie and its field.
pub async fn form(State(state): State<Arc<AppState>>, cookies: CookieJar) -> Response {
    login_page(&state, cookies, None, StatusCode::OK)
}

fn login_page(
    state: &AppState,
    cookies: CookieJar,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let token = random_token();
    let cookie = Cookie::build((LOGIN_COOKIE, token.clone()))
        .path("/login")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.https)
        .build();
    let body = html! {
        h1 { "Log in" }
        @if let Some(problem) = problem {
            p.refusal role="alert" { (problem) }
        }
        form.login method="post" action="/login" {
            input type="hidden" name="login_token" value=(token);
            label { "Name" input type="text" name="name" autocomplete="username" required autofocus; }
            label { "Password" input type="password" name="password" autocomplete="current-password" required; }
            button type="submit" { "Log in" }
        }
    };
    (status, cookies.add(cookie), page("Log in", None, body)).into_response()
}

/// Checks the password; opens a session and goes to the jobs, or says it was wrong.
pub async fn submit(
    State(state): State<Arc<AppState>>,
    cookies: CookieJar,
    Form(form): Form<LogInForm>,
) -> Response {
    let expected = cookies.get(LOGIN_COOKIE).map(|c| c.value().to_string());
    if expected.as_deref() != Some(form.login_token.as_str()) {
        return login_page(
            &state,
            cookies,
            Some("This log-in form is out of date: try again."),
            StatusCode::FORBIDDEN,
        );
    }
    if !Accounts::log_in(&state, &form.name, &form.password).await {
        tracing::warn!(
            "a log-in as {:?} was refused: wrong name or password",
            form.name
        );
        return login_page(
            &state,
            cookies,
            Some("Wrong name or password."),
            StatusCode::UNAUTHORIZED,
        );
    }
    tracing::info!("{} logged in to the web page", form.name);
    let id = state.accounts.sessions.open(&form.name);
    let cookies = cookies
        .remove(Cookie::build(LOGIN_COOKIE).path("/login"))
        .add(session_cookie(id, state.https));
    (cookies, Redirect::to("/")).into_response()
}

/// Ends the session and goes back to the log-in form.
pub async fn log_out(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    cookies: CookieJar,
    Form(form): Form<LogOutForm>,
) -> Response {
    if let Some(refusal) = visitor.refuse_forged(&form.csrf) {
        return refusal;
    }
    if let Some(session) = cookies.get(SESSION_COOKIE) {
        state.accounts.sessions.close(session.value());
    }
    let cookies = cookies.remove(Cookie::build(SESSION_COOKIE).path("/"));
    (cookies, Redirect::to("/login")).into_response()
}
