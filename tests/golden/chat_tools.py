#!/usr/bin/env python3
# Golden renderings of chat templates with tools, made with Hugging Face
# transformers, to check wick's own Jinja chat-template renderer against.
#
# How it was run (tests/data/chat_tools_golden.json):
#   python3 tests/golden/chat_tools.py FIXTURES OUT.json
# where FIXTURES holds tokenizers/qwen3/ and tokenizers/llama3/ (each with
# tokenizer.json + tokenizer_config.json, copied from /work/shared/fixtures),
# on a machine with Python 3.12 and transformers (the version is recorded in
# the output's "transformers_version").
#
# For each tokenizer, AutoTokenizer.from_pretrained(folder).apply_chat_template(
#   messages, tools=tools, add_generation_prompt=True, tokenize=False)
# is rendered for cases a..d (tools=None where a case has none). If a template
# raises, the exception text goes in "error" and "text" is null.
# Tool-call arguments are dicts, per transformers' convention.
import copy
import json
import os
import sys

import transformers
from transformers import AutoTokenizer

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    }},
    {"type": "function", "function": {
        "name": "add",
        "description": "Add two integers",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "integer"},
                "b": {"type": "integer"},
            },
            "required": ["a", "b"],
        },
    }},
]

USER_Q = {"role": "user", "content": "What is the weather in Paris?"}
CALL_1 = {"id": "call_1", "type": "function",
          "function": {"name": "get_weather",
                       "arguments": {"city": "Paris", "unit": "celsius"}}}
CALL_2 = {"id": "call_2", "type": "function",
          "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}
TOOL_1 = {"role": "tool", "tool_call_id": "call_1", "name": "get_weather",
          "content": "{\"temperature\": 21, \"sky\": \"clear\"}"}
TOOL_2 = {"role": "tool", "tool_call_id": "call_2", "name": "add",
          "content": "5"}

CASES = [
    ("a", [{"role": "system", "content": "You are helpful."}, USER_Q], TOOLS),
    ("b", [USER_Q,
           {"role": "assistant", "content": None, "tool_calls": [CALL_1]},
           TOOL_1], TOOLS),
    ("c", [USER_Q,
           {"role": "assistant", "content": "Let me check.",
            "tool_calls": [CALL_1, CALL_2]},
           TOOL_1, TOOL_2], TOOLS),
    ("d", [{"role": "user", "content": "Hi"}], None),
]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: chat_tools.py FIXTURES_DIR OUT.json")
    fixtures, out_path = sys.argv[1], sys.argv[2]
    cases = []
    for name in ("qwen3", "llama3"):
        tok = AutoTokenizer.from_pretrained(
            os.path.join(fixtures, "tokenizers", name))
        for case, messages, tools in CASES:
            # Record the inputs exactly as passed; hand transformers copies.
            rec_messages = copy.deepcopy(messages)
            rec_tools = copy.deepcopy(tools)
            text, error = None, None
            try:
                text = tok.apply_chat_template(
                    copy.deepcopy(messages), tools=copy.deepcopy(tools),
                    add_generation_prompt=True, tokenize=False)
                if not isinstance(text, str):
                    raise TypeError("apply_chat_template returned %r"
                                    % type(text).__name__)
            except Exception as e:  # record what the template raised
                text, error = None, "%s: %s" % (type(e).__name__, e)
            cases.append({"tokenizer": name, "case": case,
                          "messages": rec_messages, "tools": rec_tools,
                          "text": text, "error": error})
            print("%s %s: %s" % (name, case,
                                 "ok" if error is None else "ERROR " + error))
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"transformers_version": transformers.__version__,
                   "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
