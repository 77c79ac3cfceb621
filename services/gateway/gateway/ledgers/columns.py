"""The ledgers (台账) as operators write them: Chinese column headers, the values they write in
them (中文 labels or the API's codes), and the Chinese messages of a rejected row. Pure: a row
of cells in, the API's fields out, or the reasons it cannot be read."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from platform_contracts.ledgers import Ledger, RowError, RowProblem
from platform_contracts.member import Occupation, Stage
from platform_contracts.organization import UnitType
from platform_contracts.station import Amenity, StationKind

UNIT_TYPES = {
    UnitType.enterprise: "非公企业", UnitType.social_organization: "社会组织",
    UnitType.industry_association: "行业协会", UnitType.platform_company: "平台企业",
    UnitType.building: "商务楼宇", UnitType.park: "园区", UnitType.business_district: "商圈",
    UnitType.market: "市场",
}
STAGES = {Stage.applicant: "入党申请人", Stage.activist: "入党积极分子", Stage.candidate: "发展对象",
          Stage.probationary: "预备党员", Stage.full: "正式党员"}
OCCUPATIONS = {Occupation.rider: "外卖骑手", Occupation.courier: "快递员",
               Occupation.ride_hailing_driver: "网约车司机", Occupation.truck_driver: "货车司机",
               Occupation.streamer: "网络主播", Occupation.other: "其他"}
STATION_KINDS = {StationKind.warm_station: "暖新驿站", StationKind.service_center: "党群服务中心",
                 StationKind.friendly_community: "友好社区", StationKind.friendly_building: "友好楼宇",
                 StationKind.brothers_home: "小哥之家", StationKind.check_in_point: "党员报到点"}
AMENITIES = {Amenity.water: "饮水", Amenity.charging: "充电", Amenity.battery_swap: "换电",
             Amenity.microwave: "微波炉", Amenity.rest: "休息", Amenity.toilet: "卫生间",
             Amenity.first_aid: "急救药箱", Amenity.legal_aid: "法律援助", Amenity.heating: "取暖",
             Amenity.cooling: "纳凉", Amenity.wifi: "无线网络"}
YES, NO = "是", "否"

PROBLEM_TEXT = {
    RowProblem.invalid: "格式不正确",
    RowProblem.missing: "必填，不能为空",
    RowProblem.unknown_division: "区划未在平台登记",
    RowProblem.unknown_industry: "行业未在平台登记",
    RowProblem.outside_scope: "超出您的管辖范围",
    RowProblem.duplicate_in_file: "与文件中前面的行重复",
    RowProblem.refused: "未能登记",
}


class CellError(ValueError):
    """A cell that cannot be read as its column's value; the message is for the operator."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a code typed as a number: 370102001001.0
    text = str(value).strip()
    return text or None


def _choice(labels: dict) -> Callable[[Any], str | None]:
    by_label = {label: code.value for code, label in labels.items()} | {code.value: code.value for code in labels}

    def read(value):
        text = _text(value)
        if text is None:
            return None
        if text not in by_label:
            raise CellError("应为以下之一：" + "、".join(labels.values()))
        return by_label[text]
    return read


def _choices(labels: dict) -> Callable[[Any], list[str] | None]:
    one = _choice(labels)

    def read(value):
        text = _text(value)
        if text is None:
            return None
        return [one(part) for part in text.replace("，", ",").replace("、", ",").split(",") if part.strip()]
    return read


def _integer(value: Any) -> int | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return int(text.replace(",", ""))
    except ValueError:
        raise CellError("应为整数") from None


def _number(value: Any) -> float | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise CellError("应为数字") from None


def _yes_no(value: Any) -> bool | None:
    text = _text(value)
    if text is None:
        return None
    if isinstance(value, bool):
        return value
    if text in (YES, "Y", "y", "1", "true", "TRUE", "True"):
        return True
    if text in (NO, "N", "n", "0", "false", "FALSE", "False"):
        return False
    raise CellError("应为“是”或“否”")


def _date(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = _text(value)
    if text is None:
        return None
    for separator in ("/", ".", "年"):
        text = text.replace(separator, "-")
    text = text.replace("月", "-").removesuffix("日")
    try:
        return date(*(int(part) for part in text.split("-"))).isoformat()
    except (TypeError, ValueError):
        raise CellError("应为日期，如 2024-07-01") from None


@dataclass(frozen=True)
class Column:
    header: str  # as the template writes it
    field: str  # the API's field; "a.b" for a nested one
    read: Callable[[Any], Any] = _text
    required: bool = False
    aliases: tuple[str, ...] = ()  # other headers operators write for it
    example: Any = None
    write: Callable[[Any], Any] = lambda value: value  # the API's value as the ledger writes it


def _label_of(labels: dict) -> Callable[[Any], Any]:
    return lambda value: labels.get(value, value) if value is not None else None


def _labels_of(labels: dict) -> Callable[[Any], Any]:
    return lambda values: "、".join(labels.get(v, v) for v in values or [])


@dataclass(frozen=True)
class LedgerSpec:
    ledger: Ledger
    title: str  # the sheet's name
    columns: tuple[Column, ...]
    key: str  # the field that identifies a row's record: the same key twice in a file is a mistake
    export_extra: tuple[Column, ...] = field(default=())  # read-only columns an export adds (编号, 覆盖情况)

    def header_map(self, headers: Sequence[Any]) -> tuple[dict[int, Column], list[str]]:
        """Which cell of a row holds which column, and the required columns the headers lack."""
        by_name = {name: column for column in self.columns for name in (column.header, *column.aliases)}
        found: dict[int, Column] = {}
        for index, header in enumerate(headers):
            name = (_text(header) or "").replace(" ", "").removesuffix("*").removesuffix("（必填）")
            if name in by_name and by_name[name] not in found.values():
                found[index] = by_name[name]
        missing = [c.header for c in self.columns if c.required and c not in found.values()]
        return found, missing

    def read_row(self, cells: Sequence[Any], columns: dict[int, Column]) -> tuple[dict, list[RowError]]:
        """A row's fields for the API, and the cells that could not be read."""
        data: dict = {}
        errors: list[RowError] = []
        present = set()
        for index, column in columns.items():
            raw = cells[index] if index < len(cells) else None
            try:
                value = column.read(raw)
            except CellError as error:
                errors.append(RowError(field=column.field, problem=RowProblem.invalid, detail=str(error)))
                continue
            if value is None:
                continue
            present.add(column.field)
            target = data
            *parents, leaf = column.field.split(".")
            for parent in parents:
                target = target.setdefault(parent, {})
            target[leaf] = value
        for column in self.columns:
            if column.required and column.field not in present and not any(e.field == column.field for e in errors):
                errors.append(RowError(field=column.field, problem=RowProblem.missing))
        return data, errors

    def header_of(self, field_path: str) -> str:
        """The column a field (or a part of it: `location.lng`) is written in."""
        for column in (*self.columns, *self.export_extra):
            if field_path == column.field or field_path.startswith(column.field + "."):
                return column.header
        top = field_path.split(".")[0]
        return next((c.header for c in self.columns if c.field.split(".")[0] == top), field_path)

    def error_text(self, errors: Sequence[RowError]) -> str:
        """A rejected row's reasons, as its error column says them: 「列」问题：说明."""
        parts = []
        for error in errors:
            text = f"【{self.header_of(error.field)}】{PROBLEM_TEXT[error.problem]}"
            if error.detail:
                text += f"：{error.detail}"
            parts.append(text)
        return "；".join(parts)

    def record_cells(self, record: dict) -> list[Any]:
        """A record as the API gives it, as a row of this ledger (for exports)."""
        cells = []
        for column in (*self.export_extra, *self.columns):
            value: Any = record
            for part in column.field.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            cells.append(column.write(value))
        return cells

    def export_headers(self) -> list[str]:
        return [c.header for c in (*self.export_extra, *self.columns)]


def _industry(names_to_codes: dict[str, str] | None = None) -> Callable[[Any], str | None]:
    def read(value):
        text = _text(value)
        if text is None:
            return None
        return (names_to_codes or {}).get(text, text)
    return read


def units_spec(industry_names: dict[str, str] | None = None) -> LedgerSpec:
    """`industry_names`: industry name -> code, so that either may be written."""
    codes_to_names = {code: name for name, code in (industry_names or {}).items()}
    return LedgerSpec(Ledger.units, "单位台账", key="credit_code", columns=(
        Column("统一社会信用代码", "credit_code", required=True, aliases=("信用代码", "社会信用代码"),
               example="91370102MA3C0XXX1K", read=lambda v: (_text(v) or "").upper() or None),
        Column("单位名称", "name", required=True, aliases=("名称", "企业名称"), example="济南某某网络科技有限公司"),
        Column("单位类型", "type", _choice(UNIT_TYPES), required=True, aliases=("类型",), example="非公企业",
               write=_label_of(UNIT_TYPES)),
        Column("所属行业", "industry", _industry(industry_names), required=True, aliases=("行业",),
               example="快递物流", write=lambda code: codes_to_names.get(code, code)),
        Column("区划代码", "division", required=True, aliases=("所属区划代码", "行政区划代码", "所属区划"),
               example="370102001001"),
        Column("从业人员数", "employees", _integer, aliases=("从业人数", "职工人数"), example=120),
        Column("是否规上", "above_scale", _yes_no, aliases=("规上企业", "规模以上"), example=NO,
               write=lambda v: YES if v else NO),
        Column("地址", "address", aliases=("单位地址", "注册地址"), example="济南市历下区某某路1号"),
    ), export_extra=(
        Column("编号", "id"),
        Column("覆盖情况", "coverage", write=_label_of({"organization": "组织覆盖", "work": "工作覆盖",
                                                         "none": "未覆盖"})),
        Column("正式党员数", "full_members"),
        Column("应建未建", "should_establish", write=lambda v: YES if v else NO),
    ))


def members_spec() -> LedgerSpec:
    return LedgerSpec(Ledger.members, "党员台账", key="id_number", columns=(
        Column("姓名", "name", required=True, example="张三"),
        Column("身份证号", "id_number", required=True, aliases=("公民身份号码", "身份证号码"),
               example="370102199001011234", read=lambda v: (_text(v) or "").upper() or None),
        Column("手机号", "phone", aliases=("联系电话", "手机号码"), example="13800000000"),
        Column("所在党组织编号", "organization_id", required=True, aliases=("党组织编号",), example="（党组织的编号）"),
        Column("工作单位编号", "unit_id", aliases=("单位编号",)),
        Column("发展阶段", "stage", _choice(STAGES), aliases=("人员类别", "党员类别"), example="入党积极分子",
               write=_label_of(STAGES)),
        Column("阶段日期", "stage_on", _date, aliases=("进入阶段日期",)),
        Column("入党日期", "joined_on", _date),
        Column("职业", "occupation", _choice(OCCUPATIONS), aliases=("从业类型",), example="外卖骑手",
               write=_label_of(OCCUPATIONS)),
        Column("流动党员", "mobile", _yes_no, aliases=("是否流动党员",), example=NO, write=lambda v: YES if v else NO),
    ), export_extra=(Column("编号", "id"),))


def stations_spec() -> LedgerSpec:
    return LedgerSpec(Ledger.stations, "站点台账", key="name", columns=(
        Column("站点名称", "name", required=True, aliases=("名称",), example="泉城路暖新驿站"),
        Column("站点类型", "kind", _choice(STATION_KINDS), required=True, aliases=("类型",), example="暖新驿站",
               write=_label_of(STATION_KINDS)),
        Column("区划代码", "division", required=True, aliases=("所属区划代码",), example="370102001001"),
        Column("地址", "address", required=True, example="济南市历下区泉城路1号"),
        Column("经度", "location.lng", _number, required=True, example=117.0215),
        Column("纬度", "location.lat", _number, required=True, example=36.6657),
        Column("开放时间", "opening_hours", required=True, aliases=("营业时间",), example="Mo-Su 08:00-20:00"),
        Column("服务设施", "amenities", _choices(AMENITIES), aliases=("设施",), example="饮水、充电、休息",
               write=_labels_of(AMENITIES)),
        Column("容纳人数", "capacity", _integer, aliases=("可容纳人数",), example=10),
    ), export_extra=(Column("编号", "id"),))


def spec_for(ledger: Ledger, industry_names: dict[str, str] | None = None) -> LedgerSpec:
    if ledger == Ledger.units:
        return units_spec(industry_names)
    return members_spec() if ledger == Ledger.members else stations_spec()
