"""The served dashboard's stylesheets come from the server, never from Panel's CDN (no browser).

Bokeh builds a session either for the HTML page (Panel's ``server_html_page_for_session`` then sets
the document's ``dist_url``, which Panel uses to rewrite its components' CDN stylesheet URLs to the
server) or, without any page, in its websocket handler (``create_session_if_needed``) — e.g. when the
page's session was discarded as unused before the browser's socket opened.  Panel 1.9.4 leaves the
stylesheets of such a session on cdn.holoviz.org; ``workbench.ui.app.pin_local_css`` prevents it.
(The browser side of this: tests/test_dashboard_browser.py checks every page's requests.)
"""

import asyncio
from pathlib import Path

import pytest
from bokeh.models import ImportedStyleSheet
from bokeh.resources import Resources as BokehResources
from bokeh.server.contexts import ApplicationContext
from bokeh.util.token import generate_jwt_token, generate_session_id
from panel.io.application import build_single_handler_application
from panel.io.resources import CDN_DIST, LOCAL_DIST, Resources
from panel.io.server import server_html_page_for_session
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.ioloop import IOLoop

APP = Path(__file__).resolve().parents[1] / "app.py"


def _stylesheet_urls(doc) -> set[str]:
    return {str(s.url) for s in doc.select({"type": ImportedStyleSheet})}


async def _websocket_session(context: ApplicationContext):
    """A session built the way Bokeh's websocket handler builds one: no HTML page is rendered."""
    session_id = generate_session_id()
    request = HTTPServerRequest(start_line=RequestStartLine("GET", "/app/ws", "HTTP/1.1"),
                                headers=HTTPHeaders({"Host": "localhost"}))
    return await context.create_session_if_needed(session_id, request, generate_jwt_token(session_id))


@pytest.fixture
def served(monkeypatch, tmp_path):
    """Run ``fn(context)`` (a coroutine function) against app.py's application on a fresh loop."""
    monkeypatch.setenv("BOKEH_RESOURCES", "server")
    monkeypatch.setenv("WORKBENCH_RUNS", str(tmp_path / "runs"))

    def run(fn):
        async def main():
            context = ApplicationContext(build_single_handler_application(str(APP)),
                                         io_loop=IOLoop.current(), url="/app")
            sessions = []
            try:
                return await fn(context, sessions)
            finally:
                for session in sessions:
                    await context._discard_session(session, lambda _s: True)
        return asyncio.run(main())

    return run


def test_session_built_without_a_page_uses_local_stylesheets(served):
    async def check(context, sessions):
        session = await _websocket_session(context)
        sessions.append(session)
        urls = _stylesheet_urls(session.document)
        assert urls, "the dashboard has no Panel stylesheets?"
        assert not [u for u in urls if u.startswith(("http:", "https:", "//"))], sorted(urls)
        assert all(u.startswith(LOCAL_DIST) for u in urls), sorted(urls)
        assert session.document.template_variables["dist_url"] == LOCAL_DIST

        # the page of the same session (what the HTTP handler renders) agrees and links nothing remote
        page = server_html_page_for_session(
            session, resources=Resources.from_bokeh(BokehResources(mode="server")), title="t",
            template=session.document.template, template_variables=session.document.template_variables,
        )
        assert "cdn.holoviz.org" not in page and CDN_DIST not in page
        assert _stylesheet_urls(session.document) == urls

    served(check)


def test_without_the_pin_panel_puts_such_sessions_on_its_cdn(served, monkeypatch):
    """Control: the session path above is the one on which Panel 1.9.4 falls back to its CDN (if
    this fails after a Panel upgrade, Panel fixed it and ``pin_local_css`` may be unnecessary)."""
    import workbench.ui.app as ui_app

    monkeypatch.setattr(ui_app, "pin_local_css", lambda: None)

    async def check(context, sessions):
        session = await _websocket_session(context)
        sessions.append(session)
        cdn = {u for u in _stylesheet_urls(session.document) if u.startswith(CDN_DIST)}
        assert any("listpanel.css" in u for u in cdn) and any("loading.css" in u for u in cdn), cdn

    served(check)
