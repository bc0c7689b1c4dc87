"""FairFace's attributes and class labels, in the order of the network's 18 outputs.

Kept apart from the model so that registering the plugin imports no torchvision.
"""

from __future__ import annotations

#: Outputs 0:7 (the 7-race model; FairFace's own spelling).
RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern")
#: Outputs 7:9.
GENDERS = ("Male", "Female")
#: Outputs 9:18, age groups in years.
AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")

#: attribute -> (class labels, slice of the 18 logits they occupy).
HEADS = {
    "race": (RACES, slice(0, 7)),
    "gender": (GENDERS, slice(7, 9)),
    "age": (AGES, slice(9, 18)),
}
OUTPUTS = 18
