"""The vendored vLLM tests run only through test_vllm_upstream.py, in their own pytest process."""

collect_ignore = ["vllm_upstream"]
