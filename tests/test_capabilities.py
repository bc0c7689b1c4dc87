"""Energy capabilities: found once when an energy is built, with no-op defaults for what an energy lacks."""

from __future__ import annotations

import pytest
import torch

from promptgen.core.capabilities import Capabilities, capabilities
from promptgen.core.errors import PromptgenError
from promptgen.core.spec import parse_spec
from promptgen.plugin import EnergyBase
from promptgen.training.ebm import WeightedEnergy


class Plain(EnergyBase):
    def __call__(self, images, latents):
        return images.flatten(1).mean(1)


class Rich(Plain):
    fit_samples = 4096
    adapt_every = 10

    def __init__(self):
        super().__init__("rich")
        self.beta = torch.zeros(2)
        self.fitted = 0

    def fit(self, base):
        self.fitted += 1
        return {"kl": 0.5}

    def adapt(self, sample):
        return {"moved": 1.0}

    def state(self):
        return {"beta": self.beta.tolist()}

    def load_state(self, state):
        self.beta = torch.tensor(state["beta"])

    def targets(self):
        return ["t"]

    def advice(self):
        return "try mode=mixture"

    def lower_bound(self):
        return 0.0

    def acceptance(self, images):
        return torch.ones(images.shape[0])


def test_an_energy_without_capabilities_gets_no_op_defaults():
    caps = capabilities(Plain("plain"))
    assert not (caps.fittable or caps.stateful or caps.has_targets or caps.bounded or caps.accepting or caps.contextual)
    assert caps.adapt_every == 0 and caps.mixture_components == 0
    assert caps.fit(None) == {} and caps.state() == {} and caps.targets() == [] and caps.advice() is None
    assert caps.lower_bound() is None and caps.acceptance(torch.zeros(2, 1, 2, 2)) is None
    caps.load_state({"x": [1.0]})  # nothing to load into: no error


def test_each_capability_is_found_and_used():
    energy = Rich()
    caps = capabilities(energy)
    assert caps.fittable and caps.fit_samples == 4096 and caps.adapt_every == 10 and caps.stateful
    assert caps.fit(None) == {"kl": 0.5} and energy.fitted == 1
    assert caps.adapt(None) == {"moved": 1.0}
    caps.load_state({"beta": [1.0, 2.0]})
    assert caps.state() == {"beta": [1.0, 2.0]}
    assert caps.targets() == ["t"] and caps.advice() == "try mode=mixture" and caps.lower_bound() == 0.0
    assert caps.acceptance(torch.zeros(3, 1, 2, 2)).tolist() == [1.0, 1.0, 1.0]


def test_an_energy_of_0_1_that_says_it_needs_no_fit_is_not_fitted():
    class Old(Rich):
        needs_fit = False

    assert not capabilities(Old()).fittable


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("adapt_every", "10", "adapt_every must be a whole number >= 0, not '10'"),
        ("fit_samples", -1, "fit_samples must be a whole number >= 0, not -1"),
        ("adapt_samples", 0, "adapt_samples must be a whole number >= 1, not 0"),
        ("adapt_every", True, "adapt_every must be a whole number >= 0, not True"),
    ],
)
def test_a_capability_member_of_the_wrong_type_is_one_line_when_built(attribute, value, message):
    energy = Rich()
    setattr(energy, attribute, value)
    with pytest.raises(PromptgenError, match=message) as info:
        WeightedEnergy(parse_spec("rich"), energy, 1.0)
    assert "\n" not in str(info.value) and "energy 'rich'" in str(info.value)


def test_an_object_that_cannot_score_is_refused():
    class NotAnEnergy:
        label = "nope"

        def __call__(self, images, latents):
            return images.sum()

    with pytest.raises(PromptgenError, match="energy 'nope' has no to"):
        capabilities(NotAnEnergy())


def test_terms_carry_their_capabilities():
    term = WeightedEnergy(parse_spec("rich@3"), Rich(), 3.0)
    assert isinstance(term.caps, Capabilities) and term.caps.energy is term.energy and term.caps.fittable


def test_energy_base_moves_its_modules_and_tensors():
    class Holder(EnergyBase):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(2, 2)
            self.table = torch.zeros(3)

        def __call__(self, images, latents):
            return self.net(images.flatten(1)[:, :2]).sum(1)

    h = Holder()
    assert h.to("cpu") is h and h.label == "Holder" and h.table.device.type == "cpu"
