"""One resource of a Python dynamic provider (pulumi.dynamic), served by pulumi-resource-pulumi-python."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class GreetingProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"greeting-{props['name']}", outs={**props, "text": f"hello {props['name']}"})


class Greeting(Resource):
    text: pulumi.Output[str]

    def __init__(self, name: str, who: str) -> None:
        super().__init__(GreetingProvider(), name, {"name": who, "text": None})


greeting = Greeting("greeting", "lab")
pulumi.export("text", greeting.text)
pulumi.export("id", greeting.id)
