"""The web console: server-rendered pages with HTMX, for anonymous visitors, users and admins.

How a page is built (admin pages follow the same pattern):

- a view in `dashboard/views/<area>.py` guards itself with `access.login_required` or
  `access.role_required(Role.ADMIN)`, calls the services of the other apps, and answers with
  `rendering.render_page(request, "<area>/<page>.html", context, fragment=...)`;
- `render_page` picks the template of the current theme (`themes`), adds what every page needs
  (`context.site_context`), and for an HTMX request that targets a part of the page renders only
  `fragment`, so every URL also works as a full-page load;
- templates start with `{% extends layout %}` (the theme's base.html, which `render_page`
  puts in the context) and include partials with `{% include "partials/x.html"|themed %}`
  (after `{% load console %}`); links in the menus come from `navigation`.
"""
