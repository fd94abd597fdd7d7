"""`recast serve`: the champion refiner as an OpenAI-compatible proxy in front of any LLM.

An application points its OpenAI client at recast instead of at its LLM; recast refines the last
user message (with the rewrite check as a guard), forwards the request otherwise unchanged to the
upstream (an OpenAI-compatible server, or the local generator in-process) and returns its answer
as it came, streamed through when streaming. See recast.serve.app for the headers.
"""
