"""Translate stage: the Chinese summary and takeaways of papers into English, through an OpenAI-compatible
chat-completions endpoint (`[translate]`, off by default), cached in the `translations` table.

`client` speaks the API (batches of papers per request, a structured JSON answer that is validated),
`cache` keys what was translated (paper, hash of the Chinese text, model), and `run` translates what is not
cached yet. Translation never blocks a send: a timeout, an HTTP error or a malformed answer leaves the paper
as it is (Chinese only), logged as a warning naming it and counted. README "Translation".
"""
