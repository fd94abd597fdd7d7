"""Table 1: the prompts P_x (for p_im) and P_xy (for q_im), and the §4 truth template."""

from __future__ import annotations

Z_S = "[Z_s]"
Z_E = "[Z_e]"

SYSTEM = (
    "You are an expert prompt engineer. Help me improve this query to get a more helpful "
    "and harmless response."
)


def p_x(x: str) -> str:
    """P_x(x) of Table 1: the refiner sees only the original query x."""
    return f"{SYSTEM} Please output the modified query only! Query:{x}"


def truth(chosen: str, rejected: str) -> str:
    """§4's truth completion: states the rank of the preference pair explicitly."""
    return f'The response of "{chosen}" is better than that of "{rejected}" to resolve the query.'


def p_xy(x: str, chosen: str, rejected: str) -> str:
    """P_xy(x, y) of Table 1: q_im also sees why y+ is preferred (Eq. 6-7)."""
    fact = truth(chosen, rejected)
    return f"{SYSTEM} Form the judgment upon the following truth. Query:{x} Truth:{fact}"
