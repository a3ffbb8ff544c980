"""QuotaFlow's built-in workflows, one method per package.

react (baseline), bats (+ the BATS-harness baselines in ``baselines``), priordynaflow,
batchprompt, drqa. Each is declared in the ``quotaflow.workflows`` entry-point group
(pyproject.toml) and looked up through :mod:`orchestrator.workflow`; importing a method's
package has no side effect on the registry.
"""
