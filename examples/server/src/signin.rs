//! A deliberately simple sign-in: a name and a role in a cookie, read by the authenticator.
//! (A real application would check a password or a session store here.)

use axum::{
    Form,
    http::{HeaderMap, header, request::Parts},
    response::{Html, IntoResponse, Redirect},
};
use crudp::{User, server::AuthError};
use serde::Deserialize;

const COOKIE: &str = "crudp_user";

/// The user in the `crudp_user` cookie (`<name>:<role>`), or `401` for the API.
pub(crate) fn authenticate(parts: &Parts) -> Result<User, AuthError> {
    user(&parts.headers).ok_or_else(|| AuthError::new("sign in at / first"))
}

fn user(headers: &HeaderMap) -> Option<User> {
    let cookies = headers.get_all(header::COOKIE);
    let value = cookies
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))?;
    let (name, role) = value.split_once(':')?;
    let valid =
        |s: &str| !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric());
    (valid(name) && valid(role)).then(|| User::new(name, role))
}

#[derive(Deserialize)]
pub(crate) struct SignIn {
    name: String,
    role: String,
}

pub(crate) async fn sign_in(Form(form): Form<SignIn>) -> impl IntoResponse {
    let name: String = form
        .name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    let role = if form.role == "admin" {
        "admin"
    } else {
        "guest"
    };
    let cookie = format!("{COOKIE}={name}:{role}; Path=/; SameSite=Lax");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/"))
}

/// Clears the cookie; the page has already called `client.sign_out()`.
pub(crate) async fn sign_out() -> impl IntoResponse {
    let cookie = format!("{COOKIE}=; Path=/; Max-Age=0; SameSite=Lax");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/"))
}

pub(crate) async fn home(headers: HeaderMap) -> Html<String> {
    let who = match user(&headers) {
        Some(user) => format!(
            "<p>Signed in as <b>{}</b> ({}). Open the board in <a id=\"leptos\" href=\"/leptos/\">Leptos</a> \
             or in <a id=\"yew\" href=\"/yew/\">Yew</a>; open another window as someone else to see it live.</p>",
            user.id, user.role
        ),
        None => "<p>Sign in to use the board.</p>".to_owned(),
    };
    Html(format!(
        r#"<!doctype html><meta charset="utf-8"><title>CRUDP todo board</title>
<style>body{{font-family:sans-serif;max-width:40rem;margin:2rem auto}}</style>
<h1>CRUDP todo board</h1>{who}
<form method="post" action="/signin">
  <label>Name <input id="name" name="name" required pattern="[A-Za-z0-9]+"></label>
  <label>Role <select id="role" name="role"><option>guest</option><option>admin</option></select></label>
  <button id="signin">Sign in</button>
</form>"#
    ))
}
