/* test_jinja.c — unit tests of the Jinja-subset engine (tokenizer/jinja*.c).
 *
 * The table below was produced by running each template through jinja2 3.1.6 configured as
 * transformers does (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols,
 * transformers' tojson override): the expected strings are jinja2's output, not hand-written.
 * The cases cover published chat templates (Gemma, ChatML, Phi-3, Mistral with tools),
 * whitespace control, every statement, operators, literals, slicing, string and
 * dict methods, filters, tests, scoping of set inside loops, namespaces and macros. Further
 * tests check error reporting (unsupported constructs, syntax errors, raise_exception,
 * undefined arithmetic), limits on hostile templates, and that truncated or mutated templates
 * fail cleanly (run under ASan/UBSan for the "no crash" half). */
#include "testutil.h"

#include "tokenizer/jinja.h"

typedef struct jcase {
    const char *tpl, *ctx, *want;
} jcase;

static const jcase cases[] = {
    {"Hello {{ name }}!",
     "{\"name\": \"W\"}",
     "Hello W!"},
    {"{% if x %}a{% else %}b{% endif %}",
     "{\"x\": 0}",
     "b"},
    {"  {% if true %}\n  yes\n  {% endif %}\nend\n",
     "{}",
     "  yes\nend"},
    {"{% for m in messages %}{{ loop.index }}/{{ loop.length }} {{ m.role }}{% if not loop.last %}, {% endif %}{% endfor %}",
     "{\"messages\": [{\"role\": \"system\", \"content\": \"Be nice.\"}, {\"role\": \"user\", \"content\": \"Hi <b>\"}, {\"role\": \"assistant\", \"content\": \"<think>\\nhm\\n</think>\\n\\nHello!\"}, {\"role\": \"user\", \"content\": \"bye\"}]}",
     "1/4 system, 2/4 user, 3/4 assistant, 4/4 user"},
    {"{% for m in messages[::-1] %}{{ loop.index0 }}{{ m['role'][:2] }}{{ loop.revindex }}{% endfor %}",
     "{\"messages\": [{\"role\": \"system\", \"content\": \"Be nice.\"}, {\"role\": \"user\", \"content\": \"Hi <b>\"}, {\"role\": \"assistant\", \"content\": \"<think>\\nhm\\n</think>\\n\\nHello!\"}, {\"role\": \"user\", \"content\": \"bye\"}]}",
     "0us41as32us23sy1"},
    {"{{ 1.0 }} {{ 1e20 }} {{ 1/3 }} {{ 10/2 }} {{ 7//2 }} {{ -7 % 3 }} {{ 2**10 }} {{ [1,'a',none,true] }} {{ {'a':1, 'b': [1.5]} }} {{ (1,2) }} {{ 0.1+0.2 }} {{ 1e-5 }} {{ 123456789012345678.0 }}",
     "{}",
     "1.0 1e+20 0.3333333333333333 5.0 3 2 1024 [1, 'a', None, True] {'a': 1, 'b': [1.5]} (1, 2) 0.30000000000000004 1e-05 1.2345678901234568e+17"},
    {"{{ x|tojson }}|{{ x|tojson(indent=2) }}|{{ y|tojson }}",
     "{\"x\": {\"a\": [1, 2, {\"b\": null}], \"c\": \"\\u00e9\\\"\\n\\t\\u0001\"}, \"y\": []}",
     "{\"a\": [1, 2, {\"b\": null}], \"c\": \"\303\251\\\"\\n\\t\\u0001\"}|{\n  \"a\": [\n    1,\n    2,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": \"\303\251\\\"\\n\\t\\u0001\"\n}|[]"},
    {"{% set ns = namespace(a=1) %}{% for i in range(3) %}{% set ns.a = ns.a + i %}{% set z = i %}{% endfor %}{{ ns.a }}{{ z }}",
     "{}",
     "4"},
    {"{{ ' a b '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'Hello'.upper() }}{{ 'Hello'.lower() }}|{{ 'hello world'.title() }}|{{ 'hELLO'.capitalize() }}|{{ 'aaa'.replace('a','b',2) }}|{{ 'abc'.find('c') }}|{{ 'abcabc'.count('b') }}|{{ '-'.join(['a','b']) }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x','c')) }}",
     "{}",
     "a b|a|['a', 'b', '', 'c']|['a', 'b']|['a', 'b c']|HELLOhello|Hello World|Hello|bba|2|2|a-b|TrueTrue"},
    {"{{ s[1:] }}|{{ s[:-1] }}|{{ s[::-1] }}|{{ s[-2] }}|{{ s[::2] }}|{{ l[1:-1] }}|{{ l[-5:100] }}",
     "{\"s\": \"h\\u00e9llo\", \"l\": [1, 2, 3, 4]}",
     "\303\251llo|h\303\251ll|oll\303\251h|l|hlo|[2, 3]|[1, 2, 3, 4]"},
    {"{{ x is defined }}{{ y is defined }}{{ x is none }}{{ x is string }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}{{ x is not none }}{{ true is true }}{{ 1 is number }}{{ 1.5 is integer }}{{ {} is mapping }}{{ [] is iterable }}",
     "{\"x\": \"s\"}",
     "TrueFalseFalseTrueTrueTrueTrueFalseTrueTrueTrueFalseTrueTrue"},
    {"{{ y }}|{{ y|default('d') }}|{{ ''|default('d', true) }}|{{ y|length }}|{% for a in y %}x{% else %}empty{% endfor %}|{{ y ~ 'a' }}|{{ y is undefined }}",
     "{}",
     "|d|d|0|empty|a|True"},
    {"{{ l|length }} {{ l|first }} {{ l|last }} {{ l|join(',') }} {{ l|reverse|list }} {{ l|sort }} {{ l|sort(reverse=true) }} {{ l|unique|list }} {{ l|map('string')|join }} {{ l|select('odd')|list }} {{ l|reject('odd')|list }} {{ l|sum }} {{ l|min }} {{ l|max }}",
     "{\"l\": [3, 1, 2, 3]}",
     "4 3 3 3,1,2,3 [3, 2, 1, 3] [1, 2, 3, 3] [3, 3, 2, 1] [3, 1, 2] 3123 [3, 1, 3] [2] 9 1 3"},
    {"{{ m|selectattr('role','equalto','user')|map(attribute='content')|list }} {{ m|rejectattr('role','eq','user')|map(attribute='role')|join('|') }} {{ m|map(attribute='x', default='?')|list }}",
     "{\"m\": [{\"role\": \"system\", \"content\": \"Be nice.\"}, {\"role\": \"user\", \"content\": \"Hi <b>\"}, {\"role\": \"assistant\", \"content\": \"<think>\\nhm\\n</think>\\n\\nHello!\"}, {\"role\": \"user\", \"content\": \"bye\"}]}",
     "['Hi <b>', 'bye'] system|assistant ['?', '?', '?', '?']"},
    {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}{{ d.get('a') }}{{ d.get('z', 5) }}{{ d.keys()|list }}{{ d|items|list }}{{ d|dictsort }}",
     "{\"d\": {\"b\": 2, \"a\": 1}}",
     "b=2;a=1;ba15['b', 'a'][('b', 2), ('a', 1)][('a', 1), ('b', 2)]"},
    {"{% macro f(a, b=2) %}[{{ a }}-{{ b }}]{% endmacro %}{{ f(1) }}{{ f(1, b=3) }}{{ f(b=5, a=0) }}",
     "{}",
     "[1-2][1-3][0-5]"},
    {"{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
     "{}",
     "0134"},
    {"{% set x %}  inner {{ 1 }} {% endset %}[{{ x }}]{{ x|trim }}",
     "{}",
     "[  inner 1 ]inner 1"},
    {"{{ 'a' if x else 'b' }}{{ 'c' if not x }}|{{ x and 'y' or 'z' }}|{{ 1 < 2 < 3 }}{{ 'b' in 'abc' }}{{ 'd' not in ['d'] }}{{ 2 in [1,2] }}{{ 'a' in {'a':1} }}",
     "{\"x\": false}",
     "bc|z|TrueTrueFalseTrueTrue"},
    {"{{ '\\n' }}{{ \"a\\tb\" }}{{ 'it\\'s' }}{{ '\\u00e9\\x41' }}",
     "{}",
     "\na\tbit's\303\251A"},
    {"{{ 5|abs }}{{ -5|abs }}{{ 2.567|round(2) }}{{ 2.5|round }}{{ '42'|int + 1 }}{{ 'x'|int }}{{ '3.7'|float }}{{ 3|float }}{{ 3.9|int }}{{ 'ab'|upper }}{{ 'a-b c'|title }}{{ '<&>'|e }}{{ 'x'|safe }}",
     "{}",
     "552.572.04303.73.03ABA-B C&lt;&amp;&gt;x"},
    {"{{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}|{{ 'a\n\nb'|indent(width=3, blank=true) }}",
     "{}",
     "a\n  b\n\n  c|  a\n  b|a\n   \n   b"},
    {"{% filter upper %}abc{{ 1 }}{% endfilter %}",
     "{}",
     "ABC1"},
    {"{% for a, b in [[1,2],[3,4]] %}{{ a+b }}{% endfor %}{% for x in [1,2,3] if x > 1 %}{{ loop.index }}{{ x }}{% endfor %}",
     "{}",
     "371223"},
    {"{% for x in 'abc' %}{{ loop.previtem }}{{ x }}{{ loop.nextitem }}|{{ loop.cycle('o','e') }}{% endfor %}",
     "{}",
     "ab|oabc|ebc|o"},
    {"{% if x %}\n  a\n{% elif y %}\n  b\n{% else %}\n  c\n{% endif %}\n",
     "{\"y\": 1}",
     "  b\n"},
    {"{% raw %}{{ x }}{% endraw %}",
     "{}",
     "{{ x }}"},
    {"{{ [1,2] + [3] }}{{ 'ab' * 3 }}{{ 3 * 'x' }}{{ 'a' ~ 1 ~ none }}{{ none }}{{ true }}",
     "{}",
     "[1, 2, 3]abababxxxa1NoneNoneTrue"},
    {"{{ n.a }}{{ n['a'] }}{{ l.0 }}{{ l[-1] }}{{ l[10] }}",
     "{\"n\": {\"a\": \"A\"}, \"l\": [1, 2]}",
     "AA12"},
    {"{{ 'Hi'|list }}{{ {'a':1}|list }}{{ 'a b  c'|wordcount }}{{ ['b','A','c']|sort }}{{ ['b','A','a']|unique|list }}",
     "{}",
     "['H', 'i']['a']3['A', 'b', 'c']['b', 'A']"},
    {"{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = 1, 2 %}{{ t }}",
     "{}",
     "12(1, 2)"},
    {"{{ x|tojson(indent=4) }}",
     "{\"x\": {\"a\": {\"b\": [1, {}]}, \"k\": [[]]}}",
     "{\n    \"a\": {\n        \"b\": [\n            1,\n            {}\n        ]\n    },\n    \"k\": [\n        []\n    ]\n}"},
    {"{{ 3.0 }} {{ 2.5e-7 }} {{ 1e16 }} {{ 1e15 }} {{ -0.0 }} {{ 100.0/3 }}",
     "{}",
     "3.0 2.5e-07 1e+16 1000000000000000.0 -0.0 33.333333333333336"},
    {"{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}",
     "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}, {\"role\": \"user\", \"content\": \"Q?\"}], \"bos_token\": \"<bos>\", \"add_generation_prompt\": true}",
     "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nYo<end_of_turn>\n<start_of_turn>user\nQ?<end_of_turn>\n<start_of_turn>model\n"},
    {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
     "{\"messages\": [{\"role\": \"system\", \"content\": \"Sys\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}, {\"role\": \"user\", \"content\": \"Q?\"}], \"add_generation_prompt\": true}",
     "<|im_start|>system\nSys<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"},
    {"{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}",
     "{\"messages\": [{\"role\": \"system\", \"content\": \"Sys\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}, {\"role\": \"user\", \"content\": \"Q?\"}], \"add_generation_prompt\": false, \"eos_token\": \"<|endoftext|>\"}",
     "<|system|>\nSys<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nYo<|end|>\n<|user|>\nQ?<|end|>\n<|endoftext|>"},
    {"{%- if messages[0][\"role\"] == \"system\" %}\n    {%- set system_message = messages[0][\"content\"] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}\n\n{%- for message in loop_messages | rejectattr(\"role\", \"equalto\", \"tool\") | rejectattr(\"role\", \"equalto\", \"tool_results\") | selectattr(\"tool_calls\", \"undefined\") %}\n    {%- if (message[\"role\"] == \"user\") != (loop.index0 % 2 == 0) %}\n        {{- raise_exception(\"After the optional system message, conversation roles must alternate user/assistant/user/assistant/...\") }}\n    {%- endif %}\n{%- endfor %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n        {%- if tools is not none and (message == user_messages[-1]) %}\n            {{- \"[AVAILABLE_TOOLS] [\" }}\n            {%- for tool in tools %}\n                {%- set tool = tool.function %}\n                {{- '{\"type\": \"function\", \"function\": {' }}\n                {%- for key, val in tool.items() if key != \"return\" %}\n                    {%- if val is string %}\n                        {{- '\"' + key + '\": \"' + val + '\"' }}\n                    {%- else %}\n                        {{- '\"' + key + '\": ' + val|tojson }}\n                    {%- endif %}\n                    {%- if not loop.last %}\n                        {{- \", \" }}\n                    {%- endif %}\n                {%- endfor %}\n                {{- \"}}\" }}\n                {%- if not loop.last %}\n                    {{- \", \" }}\n                {%- else %}\n                    {{- \"]\" }}\n                {%- endif %}\n            {%- endfor %}\n            {{- \"[/AVAILABLE_TOOLS]\" }}\n            {%- endif %}\n        {%- if loop.last and system_message is defined %}\n            {{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n        {%- else %}\n            {{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}\n        {%- endif %}\n    {%- elif message[\"role\"] == \"assistant\" %}\n        {{- \" \" + message[\"content\"]|trim + eos_token}}\n    {%- else %}\n        {{- raise_exception(\"Only user and assistant roles are supported, with the exception of an initial optional system message!\") }}\n    {%- endif %}\n{%- endfor %}\n",
     "{\"messages\": [{\"role\": \"system\", \"content\": \"Sys\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}, {\"role\": \"user\", \"content\": \"Q?\"}], \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}",
     "<s>[INST] Hi[/INST] Yo</s>[INST] Sys\n\nQ?[/INST]"},
    {"{%- if messages[0][\"role\"] == \"system\" %}\n    {%- set system_message = messages[0][\"content\"] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}\n\n{%- for message in loop_messages | rejectattr(\"role\", \"equalto\", \"tool\") | rejectattr(\"role\", \"equalto\", \"tool_results\") | selectattr(\"tool_calls\", \"undefined\") %}\n    {%- if (message[\"role\"] == \"user\") != (loop.index0 % 2 == 0) %}\n        {{- raise_exception(\"After the optional system message, conversation roles must alternate user/assistant/user/assistant/...\") }}\n    {%- endif %}\n{%- endfor %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n        {%- if tools is not none and (message == user_messages[-1]) %}\n            {{- \"[AVAILABLE_TOOLS] [\" }}\n            {%- for tool in tools %}\n                {%- set tool = tool.function %}\n                {{- '{\"type\": \"function\", \"function\": {' }}\n                {%- for key, val in tool.items() if key != \"return\" %}\n                    {%- if val is string %}\n                        {{- '\"' + key + '\": \"' + val + '\"' }}\n                    {%- else %}\n                        {{- '\"' + key + '\": ' + val|tojson }}\n                    {%- endif %}\n                    {%- if not loop.last %}\n                        {{- \", \" }}\n                    {%- endif %}\n                {%- endfor %}\n                {{- \"}}\" }}\n                {%- if not loop.last %}\n                    {{- \", \" }}\n                {%- else %}\n                    {{- \"]\" }}\n                {%- endif %}\n            {%- endfor %}\n            {{- \"[/AVAILABLE_TOOLS]\" }}\n            {%- endif %}\n        {%- if loop.last and system_message is defined %}\n            {{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n        {%- else %}\n            {{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}\n        {%- endif %}\n    {%- elif message[\"role\"] == \"assistant\" %}\n        {{- \" \" + message[\"content\"]|trim + eos_token}}\n    {%- else %}\n        {{- raise_exception(\"Only user and assistant roles are supported, with the exception of an initial optional system message!\") }}\n    {%- endif %}\n{%- endfor %}\n",
     "{\"messages\": [{\"role\": \"system\", \"content\": \"Sys\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}, {\"role\": \"user\", \"content\": \"Q?\"}], \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_w\", \"description\": \"Weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}]}",
     "<s>[INST] Hi[/INST] Yo</s>[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"get_w\", \"description\": \"Weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}][/AVAILABLE_TOOLS][INST] Sys\n\nQ?[/INST]"},
    {"<ul>\n    {% for i in l %}\n        <li>{{ i }}</li>\n    {% endfor %}\n</ul>\n{%- if true %}\n x \n{%- endif %}\n  {{ 'v' }}\n  {#- c -#}\n  y\n{% set a = 1 -%}\n\n  z {{- ' w ' -}} q\n",
     "{\"l\": [1, 2]}",
     "<ul>\n        <li>1</li>\n        <li>2</li>\n</ul> x  vy\nz w q"},
    {"{% for m in ms %}{{ m.content if m.content is string else m.content|map(attribute='text')|join('') }}{% endfor %}",
     "{\"ms\": [{\"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": \"text\", \"text\": \"b\"}]}, {\"content\": \"c\"}]}",
     "abc"},
    {"{{ '%d items'|replace('%d','3') }}{{ 'x'.isdigit() }}{{ '12'.isdigit() }}",
     "{}",
     "3 itemsFalseTrue"},
    /* loop frames are reused between iterations: each still starts empty (also past the 8
     * variables where a frame's dict gets its hash index), and a macro defined in an
     * iteration keeps that iteration's variables */
    {"{% set ns = namespace(out='') %}{% for i in range(3) %}{% if i == 1 %}{{ a0 is defined }}{% endif %}{% set a0 = i %}{% set a1 = i %}{% set a2 = i %}{% set a3 = i %}{% set a4 = i %}{% set a5 = i %}{% set a6 = i %}{% set a7 = i %}{% set a8 = i %}{% set a9 = i %}{% set a10 = i %}{{ a0 }}{{ a10 }}{{ i }}{{ loop.index }}{% endfor %}|{% for k, v in {'x': 1, 'y': 2}.items() %}{% macro m() %}{{ k }}{{ v }}{% endmacro %}{% set ns.out = ns.out ~ m() %}{% endfor %}{{ ns.out }}|{% for x in [1,2,3] if x > 1 %}{% set y = x %}{{ y }}{% endfor %}|{% for i in range(3) %}{% set j = i * 10 %}{% macro m() %}{{ i }}-{{ j }}{% endmacro %}{{ m() }};{% endfor %}",
     "{}",
     "0001False11122223|x1y2|23|0-0;1-10;2-20;"},
    /* find/rfind/index by memmem (rfind on the reversed strings), in code points */
    {"{{ 'abcabc'.rfind('bc') }}{{ 'abc'.rfind('') }}{{ 'abc'.rfind('abcd') }}{{ 'h\u00e9llo'.rfind('l') }}{{ 'h\u00e9llo'.find('l') }}{{ 'h\u00e9llo'.index('o') }}{{ 'aaaa'.rfind('aa') }}",
     "{}",
     "43-13242"},
    /* dict keys hash like Python's: 1, 1.0 and True are one key (the first key object stays) */
    {"{{ {1: 'a', 1.0: 'b', true: 'c'} }}|{{ {'x': 1, 'y': 2}['y'] }}|{{ {none: 1}[none] }}|{{ {2.5: 'f'}[2.5] }}|{{ 1 in {1.0: 0} }}|{{ {'a': 1} == {'a': 1.0} }}|{{ [1, 1.0, true, 'a', 'A']|unique|list }}|{{ {'a': 1}[[1]] }}",
     "{}",
     "{1: 'c'}|2|1|f|True|True|[1, 'a']|"},
};

static char *render(const char *tpl, const char *ctx_json, wick_status *st) {
    cJSON *ctx = ctx_json ? cJSON_Parse(ctx_json) : NULL;
    char *out = NULL;
    *st = jinja_render(tpl, ctx, &out);
    cJSON_Delete(ctx);
    return out;
}

static void test_reference_cases(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        wick_status st;
        char *out = render(cases[i].tpl, cases[i].ctx, &st);
        if (st) fail_msg("case %zu (%s): %s", i, cases[i].tpl, wick_last_error());
        if (strcmp(out, cases[i].want))
            fail_msg("case %zu: %s\n want [%s]\n got  [%s]", i, cases[i].tpl, cases[i].want, out);
        free(out);
    }
}

static void expect_error(const char *tpl, const char *ctx, wick_status want, const char *needle) {
    wick_status st;
    char *out = render(tpl, ctx, &st);
    if (st != want)
        fail_msg("%s: expected status %d, got %d (%s)", tpl, want, st, wick_last_error());
    assert_null(out);
    if (needle && !strstr(wick_last_error(), needle))
        fail_msg("%s: message '%s' lacks '%s'", tpl, wick_last_error(), needle);
}

static void test_errors(void **state) {
    (void)state;
    /* jinja2 raises for these too (checked with jinja2 3.1.6) */
    expect_error("{{ raise_exception('bad role') }}", NULL, WICK_ERR_INVALID_ARG, "bad role");
    expect_error("{{ x.y }}", NULL, WICK_ERR_INVALID_ARG, "'x' is undefined");
    expect_error("{{ 'a' + 1 }}", NULL, WICK_ERR_INVALID_ARG, "unsupported operand");
    expect_error("{{ 1 // 0 }}", NULL, WICK_ERR_INVALID_ARG, "zero");
    expect_error("{% for x in none %}{% endfor %}", NULL, WICK_ERR_INVALID_ARG, "not iterable");
    expect_error("{% set x = 1 %}{% set x.a = 2 %}", NULL, WICK_ERR_INVALID_ARG, "namespace");
    expect_error("{{ {[1]: 2} }}", NULL, WICK_ERR_INVALID_ARG, "unhashable type: 'list'");
    expect_error("{{ [[1], [1]]|unique|list }}", NULL, WICK_ERR_INVALID_ARG, "unhashable");
    /* outside the subset: named, with the line */
    expect_error("a\n{% include 'x.j2' %}", NULL, WICK_ERR_UNSUPPORTED, "line 2");
    expect_error("{% extends 'base' %}", NULL, WICK_ERR_UNSUPPORTED, "extends");
    expect_error("{{ x|wordwrap }}", NULL, WICK_ERR_UNSUPPORTED, "wordwrap");
    expect_error("{{ x is foo }}", NULL, WICK_ERR_UNSUPPORTED, "foo");
    expect_error("{% for x in y recursive %}{% endfor %}", NULL, WICK_ERR_UNSUPPORTED, "recursive");
    expect_error("{{ {(1, 2): 3} }}", NULL, WICK_ERR_UNSUPPORTED, "tuples as dict keys");
    /* syntax errors */
    expect_error("{% if x %}", NULL, WICK_ERR_FORMAT, "endif");
    expect_error("{{ x ", NULL, WICK_ERR_FORMAT, "unterminated");
    expect_error("{% endfor %}", NULL, WICK_ERR_FORMAT, "endfor");
    expect_error("{{ (1 }}", NULL, WICK_ERR_FORMAT, NULL);
    expect_error("{{ 'abc }}", NULL, WICK_ERR_FORMAT, "string");
    expect_error("{# never closed", NULL, WICK_ERR_FORMAT, "comment");
    expect_error("{{ 1 + }}", NULL, WICK_ERR_FORMAT, "expression");
    /* jinja2: "'break' outside loop" at compile time (wick ended the render there) */
    expect_error("a{% break %}b", NULL, WICK_ERR_FORMAT, "outside loop");
    expect_error("{% for x in [] %}{% else %}{% continue %}{% endfor %}", NULL, WICK_ERR_FORMAT,
                 "outside loop");
    expect_error("{% for i in [1] %}{% macro m() %}{% break %}{% endmacro %}{% endfor %}", NULL,
                 WICK_ERR_FORMAT, "outside loop");
    /* limits */
    expect_error("{% for i in range(200000) %}{% endfor %}", NULL, WICK_ERR_INVALID_ARG, "range");
    expect_error("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", NULL, WICK_ERR_INVALID_ARG,
                 NULL);
    expect_error("{{ 9223372036854775807 + 1 }}", NULL, WICK_ERR_UNSUPPORTED, "overflow");
}

static void test_deep_nesting(void **state) {
    (void)state;
    size_t n = 100000;
    char *t = malloc(3 * n + 16);
    assert_non_null(t);
    /* {{ ((((...1...)))) }} far deeper than any real template */
    size_t k = 0;
    k += (size_t)sprintf(t, "{{ ");
    for (size_t i = 0; i < n; i++) t[k++] = '(';
    t[k++] = '1';
    for (size_t i = 0; i < n; i++) t[k++] = ')';
    strcpy(t + k, " }}");
    expect_error(t, NULL, WICK_ERR_UNSUPPORTED, "nesting");
    /* nested ifs */
    k = 0;
    for (size_t i = 0; i < 5000; i++) k += (size_t)sprintf(t + k, "{%% if 1 %%}");
    t[k] = 0;
    expect_error(t, NULL, WICK_ERR_UNSUPPORTED, "nesting");
    k = 0;
    for (size_t i = 0; i < 3000; i++) k += (size_t)sprintf(t + k, "not ");
    char *t2 = malloc(k + 16);
    sprintf(t2, "{{ %s1 }}", t);
    t2[3 + k + 4] = 0;
    expect_error(t2, NULL, WICK_ERR_UNSUPPORTED, "nesting");
    free(t2);
    free(t);
}

static void test_output_limit(void **state) {
    (void)state;
    /* 100000 x 100000 x 100 bytes would be 1 TB: must stop at a limit, not run out of memory */
    wick_status st;
    char *out = render("{% set s = 'x' * 100 %}{% for i in range(100000) %}{% for j in "
                       "range(100000) %}{{ s }}{% endfor %}{% endfor %}", NULL, &st);
    assert_int_not_equal(st, WICK_OK);
    assert_null(out);
}

/* Every prefix of a real template, and byte mutations of it, must give OK or an error. */
static void test_truncated_and_mutated(void **state) {
    (void)state;
    const char *tpl =
        "{%- set ns = namespace(last=-1) %}{% for m in messages[::-1] %}{% if m.role == 'user' "
        "and ns.last < 0 %}{% set ns.last = messages|length - 1 - loop.index0 %}{% endif %}"
        "{% endfor %}{# c #}{% for m in messages %}{{- '<|' ~ m['role'] ~ '|>\\n' + "
        "m.content|trim }}{% if m.content is string and '</think>' in m.content %}"
        "{{ m.content.split('</think>')[-1].lstrip('\\n') }}{% endif %}{% if loop.last and "
        "add_generation_prompt %}{{ {'a': [1, 2.5, none]}|tojson(indent=2) }}{% endif %}"
        "{% endfor %}{% macro f(x, y=2) %}{{ x * y }}{% endmacro %}{{ f(3) if true else '' }}";
    const char *ctx = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi</think>\\nyo\"},"
                      "{\"role\":\"assistant\",\"content\":\"ok\"}],\"add_generation_prompt\":true}";
    wick_status st;
    char *full = render(tpl, ctx, &st);
    assert_int_equal(st, WICK_OK);
    free(full);
    size_t n = strlen(tpl);
    char *buf = malloc(n + 1);
    for (size_t cut = 0; cut < n; cut++) {
        memcpy(buf, tpl, cut);
        buf[cut] = 0;
        char *o = render(buf, ctx, &st);
        if (st == WICK_OK) assert_non_null(o);
        else assert_null(o);
        free(o);
    }
    static const char subst[] = "{}%#-+()[]'\"|.,=~*/ \nxa0";
    uint32_t seed = 12345;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, tpl, n + 1);
        for (int m = 0; m < 3; m++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            buf[pos] = subst[(seed >> 8) % (sizeof subst - 1)];
        }
        char *o = render(buf, ctx, &st);
        if (st == WICK_OK) assert_non_null(o);
        else assert_null(o);
        free(o);
    }
    free(buf);
}

static void test_compile_once_render_many(void **state) {
    (void)state;
    jinja_template *t;
    assert_int_equal(jinja_compile("{{ a }}-{{ b|default('none') }}", &t), WICK_OK);
    cJSON *c1 = cJSON_Parse("{\"a\": 1}"), *c2 = cJSON_Parse("{\"a\": \"x\", \"b\": [true]}");
    char *o1, *o2;
    assert_int_equal(jinja_render_compiled(t, c1, &o1), WICK_OK);
    assert_int_equal(jinja_render_compiled(t, c2, &o2), WICK_OK);
    assert_string_equal(o1, "1-none");
    assert_string_equal(o2, "x-[True]");
    free(o1);
    free(o2);
    char *o3;
    assert_int_equal(jinja_render_compiled(t, NULL, &o3), WICK_OK);
    assert_string_equal(o3, "-none");
    free(o3);
    cJSON_Delete(c1);
    cJSON_Delete(c2);
    jinja_free(t);
    assert_int_equal(jinja_compile(NULL, &t), WICK_ERR_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_cases),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_output_limit),
        cmocka_unit_test(test_truncated_and_mutated),
        cmocka_unit_test(test_compile_once_render_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
