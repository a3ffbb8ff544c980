"""Run options to typed config through the project's one converter (``orchestrator.options``)."""

from __future__ import annotations

import pytest

from orchestrator.errors import BadInputError
from workflows.priordynaflow.config import RouterConfig, WorkflowOptions


def test_options_under_the_workflow_key_are_typed_by_the_shared_rules():
    options = WorkflowOptions.from_config({"priordynaflow": {
        "dataset": "gsm8k", "mode": "eval", "max_tokens": "256", "temperature": "0.5",
        "router": {"alpha": "0.2", "frozen": "false", "num_top_groups": 3, "selection": "greedy"},
    }, "qtable_pool": object()})
    assert (options.dataset, options.mode, options.max_tokens, options.temperature) == ("gsm8k", "eval", 256, 0.5)
    retrying = WorkflowOptions.from_config({"retry": "fresh", "retry_temperature": "1.0"})
    assert (retrying.retry, retrying.retry_temperature) == ("fresh", 1.0)
    assert options.router == RouterConfig(alpha=0.2, frozen=False, num_top_groups=3, selection="greedy")


def test_top_level_options_are_read_and_runtime_keys_ignored():
    options = WorkflowOptions.from_config({"roster": "code", "tools": ["python"], "qtable_pool": None})
    assert options.roster == "code" and options.router is None and options.mode == "train"


def test_a_router_config_object_is_taken_as_is():
    router = RouterConfig(epsilon=0.0)
    assert WorkflowOptions.from_config({"router": router}).router is router


def test_unknown_router_keys_are_refused_by_name():
    with pytest.raises(BadInputError, match="priordynaflow router") as caught:
        WorkflowOptions.from_config({"priordynaflow": {"router": {"alpah": 0.2}}})
    assert "alpah" in str(caught.value) and "alpha" in caught.value.expected
    with pytest.raises(BadInputError, match="alpah"):
        RouterConfig.from_dict({"alpah": 0.2})


def test_an_unknown_key_in_the_workflows_own_mapping_is_refused_and_top_level_runtime_keys_are_not():
    # A router field outside ``router`` used to be dropped without a word.
    with pytest.raises(BadInputError, match="max_path_length") as caught:
        WorkflowOptions.from_config({"priordynaflow": {"dataset": "gsm8k", "max_path_length": 3}})
    assert "router" in caught.value.expected and caught.value.detail == "unknown option"
    assert WorkflowOptions.from_config({"dataset": "gsm8k", "tools": ["python"], "max_turns": 3}).dataset == "gsm8k"


@pytest.mark.parametrize(
    ("options", "what"),
    [
        ({"mode": "learn"}, "priordynaflow mode"),
        ({"max_tokens": "many"}, "priordynaflow max_tokens"),
        ({"router": {"alpha": 1.5}}, "priordynaflow alpha"),  # the config's own range check
        ({"router": {"selection": "best"}}, "priordynaflow router selection"),
        ({"router": "fast"}, "priordynaflow router"),
        ({"route_context": "short"}, "priordynaflow route_context"),
        ({"next_choice": "always"}, "priordynaflow next_choice"),
        ({"marker_in_turn": False}, "priordynaflow marker_in_turn"),  # marker mode: nothing could route
        ({"marker_in_turn": False, "next_choice": "auto"}, "priordynaflow marker_in_turn"),
        ({"retry": "again"}, "priordynaflow retry"),
        ({"retry_temperature": "-1"}, "priordynaflow retry_temperature"),
        ({"retry_temperature": "hot"}, "priordynaflow retry_temperature"),
    ],
)
def test_bad_values_name_the_option_and_what_is_expected(options, what):
    with pytest.raises(BadInputError) as caught:
        WorkflowOptions.from_config({"priordynaflow": options})
    assert caught.value.what == what and caught.value.expected


def test_options_that_are_not_a_mapping_are_refused():
    with pytest.raises(BadInputError, match="priordynaflow options"):
        WorkflowOptions.from_config({"priordynaflow": ["gsm8k"]})


def test_route_context_is_an_option_checked_also_when_built_directly():
    assert WorkflowOptions().route_context == "compact"
    assert WorkflowOptions.from_config({"route_context": "full"}).route_context == "full"
    with pytest.raises(BadInputError, match="'compact', 'brief' or 'full'") as caught:
        WorkflowOptions(route_context="short")  # type: ignore[arg-type]
    assert caught.value.what == "priordynaflow route_context" and "short" in str(caught.value)


def test_a_rosters_router_defaults_are_router_fields_and_replace_only_those():
    from workflows.priordynaflow.agents import CODE_ROSTER, Roster

    with pytest.raises(BadInputError, match="min_agents_before_ends"):
        Roster("mine", CODE_ROSTER.agents, "coder", router_defaults={"min_agents_before_ends": 2})
    roster = Roster("mine", CODE_ROSTER.agents, "coder", router_defaults={"self_loops": False})
    base = RouterConfig(alpha=0.5)
    assert roster.router_config(base) == RouterConfig(alpha=0.5, self_loops=False)
    assert CODE_ROSTER.router_config(base) is base  # no defaults: the base as it is


def test_an_agent_hands_only_to_a_member_of_its_roster():
    from dataclasses import replace

    from workflows.priordynaflow.agents import CODE_ROSTER, MATH_CHECK_ROSTER, Roster

    assert MATH_CHECK_ROSTER.get("programmer").hands_to == "checker"
    coder = replace(CODE_ROSTER.get("coder"), hands_to="runner")  # the code roster has no runner
    with pytest.raises(BadInputError, match="hands_to") as caught:
        Roster("mine", (coder, *(a for a in CODE_ROSTER.agents if a.name != "coder")), "coder")
    assert "runner" in str(caught.value)


def test_a_rosters_retry_is_a_known_mode_and_the_run_names_none_by_default():
    from workflows.priordynaflow.agents import CODE_ROSTER, Roster

    assert WorkflowOptions().retry is None  # the roster's (the graph takes options.retry or roster.retry)
    assert Roster("mine", CODE_ROSTER.agents, "coder", retry="fresh").retry == "fresh"
    with pytest.raises(BadInputError, match="retry") as caught:
        Roster("mine", CODE_ROSTER.agents, "coder", retry="again")
    assert "again" in str(caught.value)


@pytest.mark.parametrize("options", [{"max_tokens": 0}, {"max_tokens": -1}, {"choice_max_tokens": 0},
                                     {"temperature": -0.1}, {"retry_temperature": 3.0}])
def test_token_limits_and_temperatures_out_of_range_are_bad_input(options):
    with pytest.raises(BadInputError, match=next(iter(options))):
        WorkflowOptions.from_config(options)
