"""The function registry: the ten phone-style APIs the agent can call, in a stable order.

The position of a function in `FUNCTIONS` is its functional token: `FUNCTIONS[k]` is `<nexa_k>`. Adding a
function is one `Function(...)` entry appended at the end (appending keeps the tokens of trained models
stable). This module knows names, descriptions (English and Chinese) and argument specs; it knows nothing
about tokenizers, torch or how a call is written down (that is `octopus.calls`).
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
        return out


@dataclass(frozen=True)
class Function:
    name: str
    description_en: str
    description_zh: str
    arguments: tuple[Argument, ...] = field(default_factory=tuple)

    def argument(self, name: str) -> Argument | None:
        return next((a for a in self.arguments if a.name == name), None)


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
                     pattern=EMAIL_PATTERN),
            Argument("subject", "string", "The subject line.", "邮件主题。"),
            Argument("body", "string", "The message body.", "邮件正文。", required=False),
        ),
    ),
    Function(
        "send_text_message",
        "Send a text message (SMS) to a contact name or phone number.",
        "给联系人或电话号码发送短信。",
        (
            Argument("recipient", "string", "Contact name or phone number.", "联系人姓名或电话号码。",
                     pattern=PHONE_OR_NAME_PATTERN),
            Argument("message", "string", "The text to send.", "短信内容。"),
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
            Argument("location", "string", "Where it was lost or found.", "丢失或捡到的地点。", required=False),
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

_BY_NAME = {f.name: f for f in FUNCTIONS}
if len(_BY_NAME) != len(FUNCTIONS):  # pragma: no cover - guards edits of the table above
    raise RuntimeError("duplicate function name in FUNCTIONS")


def function_names() -> list[str]:
    return [f.name for f in FUNCTIONS]


def function_tokens() -> list[str]:
    return [FUNCTION_TOKEN_FORMAT.format(k) for k in range(len(FUNCTIONS))]


def get_function(name: str) -> Function:
    """The registered function called `name`; raises KeyError naming the known functions otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown function {name!r}; known: {', '.join(_BY_NAME)}") from None


def token_for(name: str) -> str:
    get_function(name)
    return FUNCTION_TOKEN_FORMAT.format(function_names().index(name))


def function_for_token(token: str) -> Function | None:
    """The function a functional token stands for, or None for any other string."""
    for k, f in enumerate(FUNCTIONS):
        if token == FUNCTION_TOKEN_FORMAT.format(k):
            return f
    return None


def registry_json() -> list[dict[str, Any]]:
    return [
        {
            "name": f.name,
            "token": token_for(f.name),
            "description_en": f.description_en,
            "description_zh": f.description_zh,
            "arguments": [a.to_json() for a in f.arguments],
        }
        for f in FUNCTIONS
    ]
