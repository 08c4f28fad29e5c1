from moalign.data import text_features as tf


def test_prose_drops_fenced_code_including_unterminated_fences():
    assert tf.prose("a\n```py\ncode\n```\nb") == "a\nb"
    assert tf.prose("a\n~~~\ncode never closed") == "a"


def test_words_are_unicode_aware():
    assert tf.words("Don't stop — well-known café! 東京 123") == ["Don't", "stop", "well-known", "café", "東京", "123"]
    assert tf.word_count("") == 0


def test_sentences_paragraphs_bullets_headers():
    text = "# Title\nFirst. Second!\n\n- item one\n1. numbered\n**Bold header**\n\n```\n- code\n# code\n```\n"
    assert tf.sentences("First. Second! Third?") == ["First.", "Second!", "Third?"]
    assert len(tf.paragraphs(text)) == 2
    assert tf.bullet_lines(text) == ["- item one"]
    assert tf.numbered_lines(text) == ["1. numbered"]
    assert tf.header_lines(text) == ["# Title"]
    assert tf.header_lines(text, include_bold=True) == ["# Title", "**Bold header**"]


def test_cased_letters_skip_uncased_scripts():
    assert tf.cased_letters("aB 1 東") == ["a", "B"]
