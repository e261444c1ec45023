from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

from disentbench import DatasetSpec, MethodSpec, MetricSpec, hookimpl
from disentbench.plugins import collect, load_registries, plugin_manager
from disentbench.registry import DuplicateNameError, UnknownNameError


class _Plugin:
    def __init__(self, *specs, name="p"):
        self.specs, self.__name__ = specs, name

    @hookimpl
    def register_methods(self, register):
        for s in self.specs:
            register(s)


def test_builtins_arrive_through_entry_points():
    regs = load_registries()
    assert "lord" in regs.methods and "synth3d" in regs.datasets and "transfer_error" in regs.metrics
    info = regs.plugin_of("methods", "lord")
    assert info.builtin and info.distribution == "disentbench"
    eps = {ep.name for ep in metadata.entry_points(group="disentbench")}
    assert info.name in eps


def test_registering_from_a_plugin_object():
    spec = MethodSpec(name="mine", target="x:Y", description="d")
    regs = load_registries(plugins=[_Plugin(spec, name="myplugin")])
    assert regs.methods.get("mine") is spec
    assert regs.methods.origin("mine") == "myplugin"
    assert regs.plugins["myplugin"].registered == {"methods": ["mine"]}


def test_duplicate_names_name_both_plugins():
    a = _Plugin(MethodSpec(name="dup", target="a:A"), name="plugin_a")
    b = _Plugin(MethodSpec(name="dup", target="b:B"), name="plugin_b")
    with pytest.raises(DuplicateNameError) as exc:
        load_registries(plugins=[a, b], entry_points=False)
    assert "plugin_a" in str(exc.value) and "plugin_b" in str(exc.value) and "'dup'" in str(exc.value)


def test_duplicate_of_a_builtin_is_an_error():
    with pytest.raises(DuplicateNameError, match="builtin-methods"):
        load_registries(plugins=[_Plugin(MethodSpec(name="lord", target="a:A"), name="impostor")])


def test_unknown_name_suggests_and_lists():
    regs = load_registries()
    with pytest.raises(UnknownNameError) as exc:
        regs.methods.get("lrod")
    message = str(exc.value)
    assert "Did you mean 'lord'?" in message and "Registered methods:" in message and "lord" in message
    with pytest.raises(UnknownNameError, match="synth3d"):
        regs.datasets.resolve("synth3d,nope")


@pytest.mark.parametrize("bad", ["Lord", "a/b", "", "-x", "with space"])
def test_invalid_names_are_rejected(bad):
    with pytest.raises(ValueError, match="invalid method name"):
        MethodSpec(name=bad, target="a:B")


def test_spec_of_the_wrong_kind_is_rejected():
    class Wrong:
        __name__ = "wrong"

        @hookimpl
        def register_methods(self, register):
            register(DatasetSpec(name="d", target="a:B"))

    regs = load_registries(plugins=[Wrong()], entry_points=False)
    assert "registered a dataset as a method" in regs.plugins["wrong"].error


def test_a_broken_plugin_is_reported_by_name_and_the_rest_load(monkeypatch):
    class FakeDist:
        name, version = "broken-dist", "9.9"

    class BrokenEP:
        name, value, dist = "broken", "no_such_module_xyz:plugin", FakeDist()

        def load(self):
            import no_such_module_xyz  # noqa: F401

    import disentbench.plugins as plugins

    real = plugins._entry_points
    monkeypatch.setattr(plugins, "_entry_points", lambda: [BrokenEP(), *real()])
    regs = load_registries()
    assert "no_such_module_xyz" in regs.plugins["broken"].error
    assert regs.plugins["broken"].distribution == "broken-dist"
    assert "lord" in regs.methods  # everything else still loaded


def test_a_plugin_whose_hook_raises_is_reported():
    class Raising:
        __name__ = "raising"

        @hookimpl
        def register_metrics(self, register):
            raise ValueError("boom")

    regs = load_registries(plugins=[Raising()])
    assert "boom" in regs.plugins["raising"].error and "transfer_error" in regs.metrics


def test_registration_is_lazy():
    """Loading every plugin imports no method/metric module and no torch (list stays instant)."""
    code = textwrap.dedent("""
        import sys
        from disentbench.plugins import load_registries
        regs = load_registries()
        assert len(regs.methods) and len(regs.metrics)
        heavy = [m for m in sys.modules if m.startswith("disentbench_plugins.methods.")
                 or m.startswith("disentbench_plugins.metrics.") or m == "torch"]
        print(",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_registered_target_imports():
    """Contract: each built-in spec's lazy target resolves (catches typos in 'module:Class')."""
    regs = load_registries()
    for registry in (regs.methods, regs.datasets, regs.metrics, regs.executors):
        for spec in registry:
            assert spec.load() is not None, spec.name


def test_fresh_manager_per_call():
    pm1, _ = plugin_manager(entry_points=False)
    pm2, _ = plugin_manager(entry_points=False)
    assert pm1 is not pm2
    assert len(collect(pm1).methods) == 0


def test_metric_spec_validates_directions():
    with pytest.raises(ValueError, match="direction"):
        MetricSpec(name="m", target="a:B", keys={"x": "up"})


def test_spec_build_is_the_one_factory():
    """``Spec.build(options, *args)``: the target with its Config built from the options (errors
    name the plugin), or the target alone when it has no Config."""
    import dataclasses

    from disentbench.config import ConfigError

    @dataclasses.dataclass
    class Cfg:
        size: int = 3

    class WithConfig:
        Config = Cfg

        def __init__(self, config, extra=None):
            self.config, self.extra = config, extra

    class NoConfig:
        pass

    spec = DatasetSpec(name="with-config", target=WithConfig)
    built = spec.build({"size": 5}, "info")
    assert built.config == Cfg(5) and built.extra == "info"
    assert spec.configure() == Cfg(3)
    with pytest.raises(ConfigError, match=r"^with-config: unknown option\(s\) colour; valid options: size$"):
        spec.build({"colour": 1})
    assert isinstance(DatasetSpec(name="no-config", target=NoConfig).build(), NoConfig)
    assert DatasetSpec(name="no-config", target=NoConfig).configure({"x": 1}) is None
