"""hallgate as a LiteLLM Generic Guardrail (``POST /beta/litellm_basic_guardrail_api``)."""
