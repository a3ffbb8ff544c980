"""Prompt text of the agent loop, the planner, the verifier and the judge (BATS and baselines).

Written for small instruction models: short, one action format, an example, no JSON for the
agent itself (only the verifier answers in JSON).
"""

from __future__ import annotations

AGENT_SYSTEM = """\
You answer questions by looking things up in an offline encyclopedia.
Reply with action lines only, one action per line:
search: <a few keywords>
browse: <a url copied from a search result>
answer: <the answer>
Search to find pages, browse to read a page, and answer as soon as you know.
An answer is short: a name, a date, a number, or yes/no. Never a sentence.
Example:
search: Eiffel Tower architect
browse: wiki://Gustave Eiffel
answer: Gustave Eiffel"""

PLANNING_SECTION = """\
Work from the plan below. "explore" steps find candidates with broad searches; "verify" steps
check one fact about a candidate you already have, so never start with them. Think about how
much budget is left before each action."""

REPEATED = (
    "You already did exactly this in this attempt, so it was not run again. Use different "
    "keywords, browse a url from the results, or answer."
)

EXAMPLE_COPIED = (
    "`{line}` is from the example about the Eiffel Tower, not about this question, so it was not "
    "used. Search for what this question asks about, or answer it."
)

EXAMPLE_COPIED_FINAL = (
    "`{line}` is the example's answer, not this question's. Reply with one line "
    "`answer: <short answer>` to this question, your best guess from what you found."
)

# A worked exchange as real turns (the same for every method): small models copy a demonstrated
# pattern, two searches then a short answer, far more reliably than they follow a described one.
DEMO_QUESTION = "Question: In which city was the designer of the Eiffel Tower born?"
DEMO_TURNS: tuple[tuple[str, str], ...] = (
    ("assistant", "search: Eiffel Tower designer"),
    ("tool", ("Results for 'Eiffel Tower designer':\n  1. Eiffel Tower <wiki://Eiffel Tower>\n     "
             "The tower was designed by the company of Gustave Eiffel and built from 1887 to 1889.")),
    ("assistant", "search: Gustave Eiffel born"),
    ("tool", ("Results for 'Gustave Eiffel born':\n  1. Gustave Eiffel <wiki://Gustave Eiffel>\n     "
             "Gustave Eiffel (born 15 December 1832 in Dijon) was a French civil engineer.")),
    ("assistant", "answer: Dijon"),
)

EXTRACT_SYSTEM = """\
You shorten answers. Given a question and a long answer, reply with only the shortest phrase that
answers the question, of the kind the question asks for. No sentence, no explanation."""

EXTRACT_USER = """\
Question: {question}
Long answer: {answer}
Kind of answer: {kind}
Shortest answer:"""

READ_SYSTEM = """\
You answer a question from search results. Reply with only the answer: the shortest phrase that
answers the question, of the kind it asks for. No sentence, no explanation."""

READ_USER = """\
Search results:
{evidence}

Question: {question}
Kind of answer: {kind}
Short answer:"""

EXTRACT_KIND_YES_NO = "yes or no"
EXTRACT_KIND_OPEN = "a name, a date, a number or a short phrase (never yes or no)"

NEXT_ACTION = "Reply with action lines only (search: / browse: / answer:)."

FORMAT_NUDGE = (
    "Reply with action lines only: `search: <keywords>`, `browse: <url>` or `answer: <short answer>`."
)

FINAL_TURN = (
    "The tool budget is used up. Reply now with one line `answer: <short answer>`, your best guess "
    "from what you found."
)

MAX_TURNS_REACHED = (
    "You are out of turns. Reply now with one line `answer: <short answer>`, your best guess from "
    "what you found."
)

FORCING = (
    "Wait: you still have tool budget left ({left}). Use more search and browse calls to check "
    "your answer, then answer again."
)

PLANNER_SYSTEM = """\
You plan how to answer a question with an encyclopedia search tool.
List the facts needed to answer it, one per line, at most 4 lines, in this form:
explore: <a fact to find with broad searches>
verify: <a fact to check once you have a candidate answer>
Example for "Which city was the architect of the Eiffel Tower born in?":
explore: who designed the Eiffel Tower
verify: the birthplace of that architect"""

VERIFIER_SYSTEM = """\
You check a proposed answer against the evidence an agent collected. Reply with one JSON object
and nothing else, in exactly this form:
{"verdicts": ["satisfied", "unverifiable"], "decision": "CONTINUE", "justification": "...", "summary": "..."}
verdicts: one per numbered constraint, each "satisfied" (the evidence shows it), "contradicted"
(the evidence shows it is false) or "unverifiable" (not checked yet).
decision: "SUCCESS" if every constraint is satisfied; "CONTINUE" if some are unverifiable, the
lead looks right and budget is left; "PIVOT" if a constraint is contradicted, the searches hit a
dead end, or too little budget is left for this lead.
justification: one short sentence. summary: at most 30 words on what was searched, what was
found and what to try next."""

VERIFIER_USER = """\
Question: {question}
Constraints:
{constraints}
Evidence (actions and results):
{evidence}
Proposed answer: {answer}
Budget: {budget}"""

REPAIR_USER = (
    "That was not a valid JSON object ({error}). Reply with only the JSON object, with the keys "
    'verdicts, decision, justification and summary.'
)

JUDGE_SYSTEM = """\
You pick the best answer to a question among candidate answers from several attempts.
Reply with the number of the best-supported candidate and nothing else."""

JUDGE_USER = """\
Question: {question}
Candidates:
{candidates}
Number of the best candidate:"""

SUMMARY_HEAD = "Notes from earlier attempts (their raw steps are not shown):"
PIVOT_HINT = "The last lead was a dead end or too costly: follow a different lead this time."
CONTINUE_HINT = "The last lead looked right but was not confirmed: dig deeper on it."
