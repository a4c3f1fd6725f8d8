"""`jarvis verify-hang`: prove a streaming chat server survives overlapping prompts.

Scenarios drive a server (the embedded reference server, or any
OpenAI-compatible URL) and judge what came back on the wire, what its
`/v1/streams` says and, when there is one, what its log says.
"""
