"""The function registry: the ten phone-style APIs the agent can call, in a stable order.

A `Registry` is an ordered table of functions; the position of a function in it is its functional token
(`registry.functions[k]` is `<nexa_k>`). `BUILTIN` holds the ten. A model's registry is the ten followed by
the user functions it was extended with (`octopus train extend`, from a function file read by
`octopus.function_file`); it travels in the agent config and in the exported manifest, so the runtime,
the call validator, the actions and `octopus functions` read it from the model. Appending never changes
the token of a function already there. The module-level helpers (`get_function`, `token_for`, ...) answer
for `BUILTIN`. This module knows names, descriptions (English and Chinese), argument specs, example
requests and actions; it knows nothing about tokenizers, torch or how a call is written down
(`octopus.calls`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ARGUMENT_TYPES = ("string", "integer")


@dataclass(frozen=True)
class Argument:
    name: str
    type: str  # one of ARGUMENT_TYPES
    description_en: str
    description_zh: str
    required: bool = True
    enum: tuple[str, ...] | None = None
    pattern: str | None = None  # a regular expression the whole value must match (strings only)
    minimum: int | None = None  # integers only
    values_en: tuple[str, ...] = ()  # user functions: more values the data generator may put in requests
    values_zh: tuple[str, ...] = ()
    copied: bool = False  # strings only: the value is always words of the request, copied as they stand (an
    # address, a message); decoding keeps it a span of the request (`octopus.generation.ArgumentConstraint`)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "description_en": self.description_en,
            "description_zh": self.description_zh,
        }
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.pattern is not None:
            out["pattern"] = self.pattern
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.values_en or self.values_zh:
            out["values_en"], out["values_zh"] = list(self.values_en), list(self.values_zh)
        if self.copied:
            out["copied"] = True
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Argument:
        return cls(data["name"], data["type"], data["description_en"], data["description_zh"],
                   data.get("required", True), tuple(data["enum"]) if data.get("enum") is not None else None,
                   data.get("pattern"), data.get("minimum"), tuple(data.get("values_en", ())),
                   tuple(data.get("values_zh", ())), bool(data.get("copied", False)))


@dataclass(frozen=True)
class Example:
    """A user function's example request and the arguments it means (the data generator multiplies it)."""

    request: str
    arguments: dict[str, Any]
    language: str  # "en" or "zh"

    def to_json(self) -> dict[str, Any]:
        return {"request": self.request, "arguments": dict(self.arguments), "language": self.language}


@dataclass(frozen=True)
class Function:
    name: str
    description_en: str
    description_zh: str
    arguments: tuple[Argument, ...] = field(default_factory=tuple)
    examples: tuple[Example, ...] = ()  # user functions: what the data generator starts from
    action: dict[str, Any] | None = None  # user functions: {"link": URL template} | {"webhook": URL} |
    # {"handler": [argv]} (the device runs a handler only when its config allows it: actions.allow_handlers)
    concepts: tuple[str, ...] = ()  # user functions: objects (concept keys) that make it the answer when only
    image_argument: str | None = None  # the image decides ("help me with this"); the argument their name fills

    def argument(self, name: str) -> Argument | None:
        return next((a for a in self.arguments if a.name == name), None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "description_en": self.description_en,
                               "description_zh": self.description_zh,
                               "arguments": [a.to_json() for a in self.arguments]}
        if self.examples:
            out["examples"] = [e.to_json() for e in self.examples]
        if self.action is not None:
            out["action"] = dict(self.action)
        if self.concepts:
            out["concepts"], out["image_argument"] = list(self.concepts), self.image_argument
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Function:
        return cls(data["name"], data["description_en"], data["description_zh"],
                   tuple(Argument.from_json(a) for a in data.get("arguments", ())),
                   tuple(Example(e["request"], dict(e["arguments"]), e["language"]) for e in data.get("examples", ())),
                   dict(data["action"]) if data.get("action") is not None else None,
                   tuple(data.get("concepts", ())), data.get("image_argument"))


EMAIL_PATTERN = r"[^@\s\"]+@[^@\s\"]+\.[A-Za-z]{2,}"
PHONE_OR_NAME_PATTERN = r"\S(.*\S)?"  # non-empty, no surrounding white space

RECYCLING_MATERIALS = ("plastic", "paper", "glass", "metal", "electronics", "textile", "organic")
DESIGN_STYLES = ("modern", "minimalist", "scandinavian", "industrial", "rustic", "classic")
PET_SERVICES = ("food", "grooming", "vet", "walking", "toys", "boarding")


def _quantity() -> Argument:
    return Argument("quantity", "integer", "How many to order.", "购买数量。", required=False, minimum=1)


FUNCTIONS: tuple[Function, ...] = (
    Function(
        "send_email",
        "Send an email to a recipient with a subject and a body.",
        "给收件人发送一封带主题和正文的电子邮件。",
        (
            Argument("recipient", "string", "The recipient's email address.", "收件人的电子邮箱地址。",
                     pattern=EMAIL_PATTERN, copied=True),
            Argument("subject", "string", "The subject line.", "邮件主题。", copied=True),
            Argument("body", "string", "The message body.", "邮件正文。", required=False, copied=True),
        ),
    ),
    Function(
        "send_text_message",
        "Send a text message (SMS) to a contact name or phone number.",
        "给联系人或电话号码发送短信。",
        (
            Argument("recipient", "string", "Contact name or phone number.", "联系人姓名或电话号码。",
                     pattern=PHONE_OR_NAME_PATTERN, copied=True),
            Argument("message", "string", "The text to send.", "短信内容。", copied=True),
        ),
    ),
    Function(
        "google_search",
        "Search the web for information about something, such as a landmark, plant or animal.",
        "在网上搜索某样东西的信息，例如地标、植物或动物。",
        (Argument("query", "string", "What to search for.", "搜索内容。"),),
    ),
    Function(
        "amazon_shopping",
        "Buy a consumer product on Amazon.",
        "在亚马逊上购买日用消费品。",
        (Argument("product", "string", "The product to buy.", "要购买的商品。"), _quantity()),
    ),
    Function(
        "smart_recycling",
        "Tell how to recycle an item and which bin it goes in.",
        "说明物品如何回收以及应投入哪个垃圾桶。",
        (
            Argument("item", "string", "The item to recycle.", "要回收的物品。"),
            Argument("material", "string", "The item's main material.", "物品的主要材质。",
                     required=False, enum=RECYCLING_MATERIALS),
        ),
    ),
    Function(
        "lost_and_found",
        "Report a lost personal item, or an item that was found.",
        "登记丢失或捡到的个人物品。",
        (
            Argument("item", "string", "The lost or found item.", "丢失或捡到的物品。"),
            Argument("location", "string", "Where it was lost or found.", "丢失或捡到的地点。", required=False,
                     copied=True),
        ),
    ),
    Function(
        "interior_design",
        "Suggest interior design ideas for a piece of furniture or a room.",
        "为家具或房间提供室内设计建议。",
        (
            Argument("item", "string", "The furniture or room.", "家具或房间。"),
            Argument("style", "string", "The design style wanted.", "想要的设计风格。", required=False,
                     enum=DESIGN_STYLES),
        ),
    ),
    Function(
        "instacart_shopping",
        "Order groceries for delivery from Instacart.",
        "通过 Instacart 订购送货上门的生鲜杂货。",
        (Argument("item", "string", "The grocery item.", "要订购的食品杂货。"), _quantity()),
    ),
    Function(
        "doordash_delivery",
        "Order a prepared meal for delivery from DoorDash.",
        "通过 DoorDash 订购外卖餐食。",
        (Argument("dish", "string", "The dish to order.", "要点的菜品。"), _quantity()),
    ),
    Function(
        "pet_care",
        "Arrange care for a pet: food, grooming, a vet visit, walking, toys or boarding.",
        "为宠物安排照顾：食物、美容、看兽医、遛宠、玩具或寄养。",
        (
            Argument("pet", "string", "The kind of pet.", "宠物种类。"),
            Argument("service", "string", "The service needed.", "需要的服务。", required=False,
                     enum=PET_SERVICES),
        ),
    ),
)

FUNCTION_TOKEN_FORMAT = "<nexa_{}>"
NO_FUNCTION_TOKEN = "<nexa_none>"
END_TOKEN = "<nexa_end>"
IMAGE_TOKEN = "<image>"
NO_FUNCTION_DESCRIPTION_EN = "No function: the request is not one of the supported actions."
NO_FUNCTION_DESCRIPTION_ZH = "无对应功能：该请求不属于支持的操作。"

def function_token(index: int) -> str:
    return FUNCTION_TOKEN_FORMAT.format(index)


@dataclass(frozen=True)
class Registry:
    """An ordered function table: `functions[k]` is called with `<nexa_k>`."""

    functions: tuple[Function, ...]

    def __post_init__(self):
        names = [f.name for f in self.functions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate function name(s) {', '.join(duplicates)}")

    def __len__(self) -> int:
        return len(self.functions)

    def __iter__(self):
        return iter(self.functions)

    def names(self) -> list[str]:
        return [f.name for f in self.functions]

    def tokens(self) -> list[str]:
        return [function_token(k) for k in range(len(self.functions))]

    def get(self, name: str) -> Function:
        """The function called `name`; raises KeyError naming the known functions otherwise."""
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(f"unknown function {name!r}; known: {', '.join(self.names())}")

    def token_for(self, name: str) -> str:
        self.get(name)
        return function_token(self.names().index(name))

    def for_token(self, token: str) -> Function | None:
        """The function a functional token stands for, or None for any other string."""
        for k, f in enumerate(self.functions):
            if token == function_token(k):
                return f
        return None

    @property
    def user_functions(self) -> tuple[Function, ...]:
        """The functions after the ten (those a model was extended with)."""
        return self.functions[len(FUNCTIONS):]

    def extended(self, functions: tuple[Function, ...] | list[Function]) -> Registry:
        """This table with `functions` appended (the tokens of those already here never change)."""
        return Registry((*self.functions, *functions))

    def to_json(self) -> list[dict[str, Any]]:
        return [{**f.to_json(), "token": self.token_for(f.name)} for f in self.functions]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> Registry:
        """A table written by `to_json` (an exported manifest's `functions`); the ten must lead it unchanged."""
        functions = tuple(Function.from_json({k: v for k, v in d.items() if k != "token"}) for d in data)
        if [f.name for f in functions[:len(FUNCTIONS)]] != [f.name for f in FUNCTIONS]:
            raise ValueError("a function table must start with the ten built-in functions in their order")
        return cls(functions)

    @classmethod
    def with_user_functions(cls, functions: list[dict[str, Any]] | tuple[Function, ...]) -> Registry:
        """The ten followed by user functions (as JSON, e.g. an agent config's `functions`, or objects)."""
        return BUILTIN.extended([f if isinstance(f, Function) else Function.from_json(f) for f in functions])


BUILTIN = Registry(FUNCTIONS)


def function_names() -> list[str]:
    return BUILTIN.names()


def function_tokens() -> list[str]:
    return BUILTIN.tokens()


def get_function(name: str) -> Function:
    """The built-in function called `name`; raises KeyError naming the known functions otherwise."""
    return BUILTIN.get(name)


def token_for(name: str) -> str:
    return BUILTIN.token_for(name)


def function_for_token(token: str) -> Function | None:
    """The built-in function a functional token stands for, or None for any other string."""
    return BUILTIN.for_token(token)


def registry_json() -> list[dict[str, Any]]:
    return BUILTIN.to_json()
