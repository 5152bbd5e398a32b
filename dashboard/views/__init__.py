"""Page views, one module per area. Each view parses its input, calls a service of the app
that owns the data, and answers with `dashboard.rendering.render_page`."""
