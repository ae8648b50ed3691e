"""The concept table: everyday objects an image can show, with EN/ZH names and what they imply.

Each concept is one emoji code point (rendered from several icon sets) with a category; the category says
which function an image-decided request about it calls ("order this" on a pizza -> doordash_delivery).
Neutral objects imply nothing: they are distractors and backgrounds for text-decided requests.
Knows nothing about rendering or queries.
"""

from __future__ import annotations

from dataclasses import dataclass

# category -> the function an image-decided request calls, and the argument the object's name fills
CATEGORY_FUNCTION = {
    "pet": ("pet_care", "pet"),
    "recyclable": ("smart_recycling", "item"),
    "lost_item": ("lost_and_found", "item"),
    "furniture": ("interior_design", "item"),
    "prepared_food": ("doordash_delivery", "dish"),
    "grocery": ("instacart_shopping", "item"),
    "consumer_good": ("amazon_shopping", "product"),
    "search_subject": ("google_search", "query"),
    "neutral": (None, None),
}


# how the naming stage says what kind of thing each category is: (English, Chinese)
CATEGORY_NAMES = {
    "pet": ("a pet", "宠物"),
    "recyclable": ("recyclable waste", "可回收物"),
    "lost_item": ("a personal belonging", "随身物品"),
    "furniture": ("furniture", "家具"),
    "prepared_food": ("a prepared dish", "熟食"),
    "grocery": ("a grocery item", "生鲜杂货"),
    "consumer_good": ("a product to buy", "商品"),
    "search_subject": ("a sight or wild thing", "风景名胜或野生动植物"),
    "neutral": ("an everyday object", "日常小物"),
}
CATEGORIES = tuple(CATEGORY_FUNCTION)  # a fixed order: the index is the category's class id


@dataclass(frozen=True)
class Concept:
    key: str  # stable id, also the English name
    codepoint: str  # hex, upper case, '-' between code points
    en: str
    zh: str
    category: str
    material: str | None = None  # recyclables only

    @property
    def function(self) -> str | None:
        return CATEGORY_FUNCTION[self.category][0]

    def name(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


def _c(codepoint: str, en: str, zh: str, category: str, material: str | None = None) -> Concept:
    return Concept(en.replace(" ", "_"), codepoint, en, zh, category, material)


CONCEPTS: tuple[Concept, ...] = (
    # pets -> pet_care
    _c("1F408", "cat", "猫", "pet"), _c("1F415", "dog", "狗", "pet"), _c("1F407", "rabbit", "兔子", "pet"),
    _c("1F439", "hamster", "仓鼠", "pet"), _c("1F99C", "parrot", "鹦鹉", "pet"),
    _c("1F420", "goldfish", "金鱼", "pet"), _c("1F422", "turtle", "乌龟", "pet"),
    _c("1F429", "poodle", "贵宾犬", "pet"), _c("1F401", "mouse", "小老鼠", "pet"),
    _c("1F424", "chick", "小鸡", "pet"),
    # recyclables -> smart_recycling
    _c("1F4F0", "newspaper", "报纸", "recyclable", "paper"),
    _c("1F4E6", "cardboard box", "纸箱", "recyclable", "paper"),
    _c("1F96B", "tin can", "罐头盒", "recyclable", "metal"),
    _c("1F50B", "battery", "电池", "recyclable", "electronics"),
    _c("1F37C", "plastic bottle", "塑料瓶", "recyclable", "plastic"),
    _c("1F964", "plastic cup", "塑料杯", "recyclable", "plastic"),
    _c("1F37E", "glass bottle", "玻璃瓶", "recyclable", "glass"),
    _c("1F4A1", "light bulb", "灯泡", "recyclable", "glass"),
    _c("1F455", "old t-shirt", "旧T恤", "recyclable", "textile"),
    _c("1F9FB", "paper roll", "卷纸", "recyclable", "paper"),
    _c("1F4BE", "floppy disk", "软盘", "recyclable", "electronics"),
    _c("1F9F4", "lotion bottle", "乳液瓶", "recyclable", "plastic"),
    _c("1F4DC", "scroll", "纸卷", "recyclable", "paper"),
    _c("1F4E0", "fax machine", "传真机", "recyclable", "electronics"),
    # lost personal items -> lost_and_found
    _c("1F45B", "wallet", "钱包", "lost_item"), _c("1F511", "key", "钥匙", "lost_item"),
    _c("1F453", "glasses", "眼镜", "lost_item"), _c("1F302", "umbrella", "雨伞", "lost_item"),
    _c("1F392", "backpack", "背包", "lost_item"), _c("231A", "watch", "手表", "lost_item"),
    _c("1F48D", "ring", "戒指", "lost_item"), _c("1F4B3", "credit card", "信用卡", "lost_item"),
    _c("1F45C", "handbag", "手提包", "lost_item"), _c("1F4BC", "briefcase", "公文包", "lost_item"),
    _c("1F9E2", "cap", "帽子", "lost_item"), _c("1F9E3", "scarf", "围巾", "lost_item"),
    _c("1F4F1", "mobile phone", "手机", "lost_item"),
    # furniture -> interior_design
    _c("1FA91", "chair", "椅子", "furniture"), _c("1F6CB", "sofa", "沙发", "furniture"),
    _c("1F6CF", "bed", "床", "furniture"), _c("1F6AA", "door", "门", "furniture"),
    _c("1FA9F", "window", "窗户", "furniture"), _c("1FA9E", "mirror", "镜子", "furniture"),
    _c("1F6C1", "bathtub", "浴缸", "furniture"), _c("1F5BC", "framed picture", "装饰画", "furniture"),
    _c("1F6BF", "shower", "淋浴", "furniture"), _c("1F6BD", "toilet", "马桶", "furniture"),
    # prepared food -> doordash_delivery
    _c("1F355", "pizza", "披萨", "prepared_food"), _c("1F354", "hamburger", "汉堡", "prepared_food"),
    _c("1F363", "sushi", "寿司", "prepared_food"), _c("1F35C", "ramen", "拉面", "prepared_food"),
    _c("1F32E", "taco", "墨西哥卷饼", "prepared_food"), _c("1F32D", "hot dog", "热狗", "prepared_food"),
    _c("1F35B", "curry rice", "咖喱饭", "prepared_food"), _c("1F95F", "dumplings", "饺子", "prepared_food"),
    _c("1F35D", "spaghetti", "意大利面", "prepared_food"), _c("1F35F", "french fries", "薯条", "prepared_food"),
    _c("1F371", "bento box", "便当", "prepared_food"), _c("1F357", "fried chicken", "炸鸡", "prepared_food"),
    _c("1F96A", "sandwich", "三明治", "prepared_food"), _c("1F95E", "pancakes", "煎饼", "prepared_food"),
    # groceries -> instacart_shopping
    _c("1F34E", "apple", "苹果", "grocery"), _c("1F34C", "banana", "香蕉", "grocery"),
    _c("1F955", "carrot", "胡萝卜", "grocery"), _c("1F966", "broccoli", "西兰花", "grocery"),
    _c("1F95A", "eggs", "鸡蛋", "grocery"), _c("1F35E", "bread", "面包", "grocery"),
    _c("1F9C0", "cheese", "奶酪", "grocery"), _c("1F345", "tomato", "西红柿", "grocery"),
    _c("1F954", "potato", "土豆", "grocery"), _c("1F9C5", "onion", "洋葱", "grocery"),
    _c("1F34B", "lemon", "柠檬", "grocery"), _c("1F347", "grapes", "葡萄", "grocery"),
    _c("1F353", "strawberry", "草莓", "grocery"), _c("1F951", "avocado", "牛油果", "grocery"),
    _c("1F33D", "corn", "玉米", "grocery"), _c("1F952", "cucumber", "黄瓜", "grocery"),
    _c("1F349", "watermelon", "西瓜", "grocery"), _c("1F34D", "pineapple", "菠萝", "grocery"),
    # consumer goods -> amazon_shopping
    _c("1F4F7", "camera", "相机", "consumer_good"), _c("1F4BB", "laptop", "笔记本电脑", "consumer_good"),
    _c("1F3A7", "headphones", "耳机", "consumer_good"), _c("1F3B8", "guitar", "吉他", "consumer_good"),
    _c("1F9F8", "teddy bear", "泰迪熊", "consumer_good"), _c("26BD", "soccer ball", "足球", "consumer_good"),
    _c("1F45F", "running shoes", "跑鞋", "consumer_good"), _c("1F484", "lipstick", "口红", "consumer_good"),
    _c("1F4DA", "books", "书", "consumer_good"), _c("1F3AE", "game controller", "游戏手柄", "consumer_good"),
    _c("1F4FA", "television", "电视", "consumer_good"), _c("23F0", "alarm clock", "闹钟", "consumer_good"),
    _c("1F528", "hammer", "锤子", "consumer_good"), _c("1F6F9", "skateboard", "滑板", "consumer_good"),
    _c("1F576", "sunglasses", "太阳镜", "consumer_good"), _c("1F5A8", "printer", "打印机", "consumer_good"),
    _c("1F457", "dress", "连衣裙", "consumer_good"), _c("1F3C0", "basketball", "篮球", "consumer_good"),
    # landmarks, plants, wild animals -> google_search
    _c("1F5FD", "Statue of Liberty", "自由女神像", "search_subject"),
    _c("1F5FC", "Tokyo Tower", "东京塔", "search_subject"),
    _c("1F5FB", "Mount Fuji", "富士山", "search_subject"), _c("1F30B", "volcano", "火山", "search_subject"),
    _c("1F3F0", "castle", "城堡", "search_subject"), _c("1F5FF", "moai statue", "摩艾石像", "search_subject"),
    _c("1F33B", "sunflower", "向日葵", "search_subject"), _c("1F335", "cactus", "仙人掌", "search_subject"),
    _c("1F337", "tulip", "郁金香", "search_subject"), _c("1F338", "cherry blossom", "樱花", "search_subject"),
    _c("1F334", "palm tree", "棕榈树", "search_subject"), _c("1F344", "mushroom", "蘑菇", "search_subject"),
    _c("1F981", "lion", "狮子", "search_subject"), _c("1F418", "elephant", "大象", "search_subject"),
    _c("1F992", "giraffe", "长颈鹿", "search_subject"), _c("1F993", "zebra", "斑马", "search_subject"),
    _c("1F427", "penguin", "企鹅", "search_subject"), _c("1F98B", "butterfly", "蝴蝶", "search_subject"),
    _c("1F989", "owl", "猫头鹰", "search_subject"), _c("1F40B", "whale", "鲸鱼", "search_subject"),
    _c("1F998", "kangaroo", "袋鼠", "search_subject"), _c("1F428", "koala", "考拉", "search_subject"),
    _c("1F419", "octopus", "章鱼", "search_subject"), _c("1F9A9", "flamingo", "火烈鸟", "search_subject"),
    # neutral objects: distractors and backgrounds for text-decided requests
    _c("270F", "pencil", "铅笔", "neutral"), _c("1F4CE", "paperclip", "回形针", "neutral"),
    _c("1F388", "balloon", "气球", "neutral"), _c("1F56F", "candle", "蜡烛", "neutral"),
    _c("1F3C6", "trophy", "奖杯", "neutral"), _c("1F514", "bell", "铃铛", "neutral"),
    _c("1F4C5", "calendar", "日历", "neutral"), _c("1F381", "gift box", "礼盒", "neutral"),
    _c("1F4CC", "pushpin", "图钉", "neutral"), _c("1F9F2", "magnet", "磁铁", "neutral"),
    _c("1F3B2", "dice", "骰子", "neutral"), _c("1F58D", "crayon", "蜡笔", "neutral"),
)

_BY_KEY = {c.key: c for c in CONCEPTS}
if len(_BY_KEY) != len(CONCEPTS):  # pragma: no cover - guards edits of the table
    raise RuntimeError("duplicate concept key")


def concept(key: str) -> Concept:
    return _BY_KEY[key]


def by_category(category: str) -> list[Concept]:
    return [c for c in CONCEPTS if c.category == category]


def image_decided_functions() -> list[str]:
    return sorted({f for f, _ in CATEGORY_FUNCTION.values() if f is not None})
