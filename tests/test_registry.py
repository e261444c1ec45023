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
    """A clash no longer stops loading: using the name raises, naming both plugins."""
    a = _Plugin(MethodSpec(name="dup", target="a:A"), name="plugin_a")
    b = _Plugin(MethodSpec(name="dup", target="b:B"), name="plugin_b")
    regs = load_registries(plugins=[a, b], entry_points=False)
    with pytest.raises(DuplicateNameError) as exc:
        regs.methods.get("dup")
    assert "plugin_a" in str(exc.value) and "plugin_b" in str(exc.value) and "'dup'" in str(exc.value)


def test_duplicate_of_a_builtin_is_an_error():
    regs = load_registries(plugins=[_Plugin(MethodSpec(name="lord", target="a:A"), name="impostor")])
    with pytest.raises(DuplicateNameError, match="builtin-methods"):
        regs.methods.resolve(["lord"])


class _ForkDist:
    name, version = "lord-fork", "2.0"


class _ForkEP:
    """An installed third-party distribution whose plugin registers its own 'lord' beside a new method."""

    name, value, dist = "lordfork", "lord_fork.plugin:plugin", _ForkDist()

    def load(self):
        return _Plugin(MethodSpec(name="lord", target="lord_fork:LORD", description="a fork"),
                       MethodSpec(name="fork-only", target="lord_fork:Other", description="new"), name="lordfork")


@pytest.fixture
def clashing_plugin(monkeypatch):
    import disentbench.plugins as plugins

    real = plugins._entry_points
    monkeypatch.setattr(plugins, "_entry_points", lambda: [*real(), _ForkEP()])


def test_a_clash_sets_the_name_aside_and_everything_else_loads(clashing_plugin):
    regs = load_registries()
    with pytest.raises(DuplicateNameError) as exc:
        regs.methods.get("lord")
    message = str(exc.value)
    assert "plugin 'builtin-methods' (distribution disentbench" in message
    assert "plugin 'lordfork' (distribution lord-fork 2.0)" in message
    assert "lord" not in regs.methods.names() and "lord" not in [s.name for s in regs.methods.resolve("all")]
    assert regs.methods.get("fork-only").description == "new" and regs.methods.get("autoencoder").name == "autoencoder"
    assert regs.methods.clashes == {"lord": ["builtin-methods", "lordfork"]}
    assert regs.plugins["lordfork"].clashes == ["method 'lord'"] and not regs.failures
    assert regs.clash_messages() == [message]


def test_a_clash_is_reported_and_commands_that_do_not_use_it_work(clashing_plugin, tmp_path, capsys):
    from disentbench.cli import main

    assert main(["plugins"]) == 1  # lists everything, says what clashes
    captured = capsys.readouterr()
    assert "builtin-methods" in captured.out and "lordfork" in captured.out and "lord-fork" in captured.out
    assert "fork-only" in captured.out and "registered by another plugin too: method 'lord'" in captured.out
    assert "method 'lord' is registered twice" in captured.err
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "fork-only" in out and "autoencoder" in out
    lord_row = next(line for line in out.splitlines() if line.startswith("lord "))
    assert "registered twice" in lord_row and "built-in and lord-fork 2.0" in lord_row
    assert main(["run", "--methods", "lord", "--datasets", "synth3d", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "error: method 'lord' is registered twice" in err and "lord-fork 2.0" in err and "disentbench" in err
    assert not (tmp_path / "r").exists()
    tiny = {"synth3d": dict(resolution=16, n_train_classes=4, n_test_classes=2, n_azimuths=2, n_elevations=2),
            "train": dict(max_steps=2), "eval": dict(n_pairs=4, check_min_spread=0, check_max_mse=0),
            "autoencoder": dict(batch_size=8, recon_loss="l1", class_dim=4, content_dim=4, generator_channels=8,
                                generator_last_channels=4, generator_last_kernel=3, encoder_channels=4,
                                encoder_hidden=8)}
    sets = [a for scope, table in tiny.items() for k, v in table.items() for a in ("--set", f"{scope}.{k}={v}")]
    assert main(["run", "--methods", "autoencoder", "--datasets", "synth3d", "--metrics", "reconstruction",
                 "--device", "cpu", "--quiet", "--out", str(tmp_path / "runs"), "--no-leaderboard", *sets]) == 0
    assert "1 of 1 run(s) finished" in capsys.readouterr().out


def test_unknown_name_suggests_and_lists():
    regs = load_registries()
    with pytest.raises(UnknownNameError) as exc:
        regs.methods.get("lrod")
    message = str(exc.value)
    assert "Did you mean 'lord'?" in message and "Registered methods:" in message and "lord" in message
    assert "DISENTBENCH_PLUGINS" in message  # a plugin of one's own that was never loaded: how to load it
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
