from models_hub.markdown import render_markdown


def test_script_tags_are_dropped():
    html = render_markdown("Hello\n\n<script>alert('x')</script>\n\n**bold**")
    assert "<script" not in html
    assert "alert" not in html
    assert "<strong>bold</strong>" in html


def test_event_handlers_are_dropped():
    html = render_markdown('<img src="cat.png" onerror="alert(1)" alt="cat">')
    assert "onerror" not in html
    assert "alert" not in html
    assert 'alt="cat"' in html


def test_javascript_links_are_dropped_and_http_links_kept():
    html = render_markdown("[bad](javascript:alert(1)) and [good](https://example.com)")
    assert "javascript:" not in html
    assert 'href="https://example.com"' in html
    assert "nofollow" in html


def test_markdown_features_render():
    html = render_markdown("# Title\n\n```python\nprint(1)\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<h1>Title</h1>" in html
    assert '<code class="language-python">' in html
    assert "<table>" in html


def test_empty_description_renders_empty():
    assert render_markdown("") == ""
