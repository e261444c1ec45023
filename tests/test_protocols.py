"""The Method, Dataset and Metric protocols are what the harness calls, Method exactly BaseMethod's
interface, and they are checked when a plugin registers its class (a lazy "module:Class" target,
when it is imported): a class missing a member is refused, naming what it lacks."""
from __future__ import annotations

import pytest

from disentbench import DatasetSpec, MethodSpec, MetricSpec, hookimpl
from disentbench.method import BaseMethod
from disentbench.plugins import load_registries
from disentbench.protocols import ContractError, Dataset, Method, Metric, members, missing
from disentbench.registry import Registry
from disentbench.runner import plan


class NoFit:
    """Everything a method needs but ``fit``."""

    def stages(self, train): ...
    def encode(self, images): ...
    def decode(self, class_code, content_code): ...
    def transfer(self, class_images, content_images): ...
    def reconstruct(self, images): ...
    def save(self, path): ...
    def load(self, path): ...
    def to(self, device): ...
    def eval(self): ...


class Good(BaseMethod):
    pass


class _Plugin:
    __name__ = "protocol_test_plugin"

    @hookimpl
    def register_methods(self, register):
        register(MethodSpec(name="no-fit", target=NoFit))
        register(MethodSpec(name="good-one", target=Good))

    @hookimpl
    def register_metrics(self, register):
        register(MetricSpec(name="no-compute", target=object, keys={"x": "min"}))


def test_the_method_protocol_is_base_methods_interface():
    provided = {n for n, v in vars(BaseMethod).items() if callable(v) and not n.startswith("_")}
    assert set(members(Method)) == provided | {"to", "eval"}  # the two from torch.nn.Module
    assert missing(BaseMethod, Method) == [] and issubclass(BaseMethod, Method)
    assert members(Dataset) == ["load"] and members(Metric) == ["compute"]


def test_registering_a_method_without_fit_is_refused_naming_it():
    with pytest.raises(ContractError, match=r"method 'no-fit': .*NoFit does not implement the Method protocol: "
                                            r"it lacks fit \(subclass disentbench.method.BaseMethod"):
        Registry("method").add(MethodSpec(name="no-fit", target=NoFit))
    regs = load_registries([_Plugin()])
    assert "no-fit" not in regs.methods and "good-one" in regs.methods  # the plugin's other method registers
    assert "no-compute" not in regs.metrics
    error = regs.plugins["protocol_test_plugin"].error
    assert "lacks fit" in error and "metric 'no-compute'" in error and "lacks compute" in error


def test_a_dataset_without_load_is_refused():
    with pytest.raises(ContractError, match="dataset 'empty': .* lacks load$"):
        Registry("dataset").add(DatasetSpec(name="empty", target=type("Empty", (), {})))


def test_a_lazy_target_is_checked_when_imported_and_its_runs_fail_saying_why():
    spec = MethodSpec(name="lazy-bad", target="executorplugin:EchoExecutor")
    Registry("method").add(spec)  # cheap: nothing imported at registration
    with pytest.raises(ContractError, match="lacks stages, fit, encode, decode, transfer, reconstruct, save, load"):
        spec.load()

    class Lazy:
        __name__ = "lazy_plugin"

        @hookimpl
        def register_methods(self, register):
            register(spec)

    regs = load_registries([Lazy()])
    cells = plan(regs, methods="lazy-bad", datasets="synth3d", metrics=[], progress=False)
    assert "does not implement the Method protocol" in cells[0].run.import_error
