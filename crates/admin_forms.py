"""The forms of the operator portal's pages (add a crate, create an API key, the search page)."""

from __future__ import annotations

from django import forms
from django.http import QueryDict

from crates.models import Crate, Document

SEARCH_SIGNALS = ("vector", "keyword", "path", "type")


class AddCrateForm(forms.Form):
    name = forms.CharField(
        max_length=64, help_text="As on crates.io, e.g. serde_json or tokio.",
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "off", "spellcheck": "false"}),
    )
    version = forms.CharField(
        max_length=128, required=False, help_text="An exact version such as 1.0.3; empty means the newest release.",
        widget=forms.TextInput(attrs={"placeholder": "latest", "autocomplete": "off"}),
    )
    force = forms.BooleanField(
        required=False, help_text="Re-process every item even if this version is already ingested and unchanged.",
    )



class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="Who or what uses the key, e.g. 'ci-agent' or 'alice laptop'.",
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "off"}),
    )


class SearchForm(forms.Form):
    q = forms.CharField(
        label="Query", max_length=500,
        widget=forms.TextInput(attrs={"autofocus": True, "placeholder": "e.g. parse a log level", "size": 50}),
    )
    crate = forms.ChoiceField(required=False, label="Crate")
    version = forms.CharField(required=False, max_length=128, widget=forms.TextInput(attrs={"placeholder": "active"}))
    kinds = forms.MultipleChoiceField(
        required=False, choices=Document.Kind.choices, widget=forms.CheckboxSelectMultiple, label="Kinds"
    )
    signals = forms.MultipleChoiceField(
        required=False, initial=list(SEARCH_SIGNALS), widget=forms.CheckboxSelectMultiple,
        choices=[(s, s) for s in SEARCH_SIGNALS], label="Signals",
        help_text="Which retrievers take part. Unticking all means all.",
    )
    limit = forms.IntegerField(min_value=1, max_value=50, initial=10, required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Soft-deleted crates stay selectable, so an operator sees exactly what an agent would be told.
        crates = Crate.objects.order_by("normalized_name").values_list("name", "deleted_at")
        self.fields["crate"].choices = [
            ("", "All crates"), *((name, f"{name} (soft-deleted)" if deleted else name) for name, deleted in crates)
        ]


def search_form_data(query: QueryDict) -> QueryDict:
    """A link such as ``?q=mutex&crate=tokio`` means the defaults for everything it leaves out."""
    data = query.copy()
    if "signals" not in data:
        data.setlist("signals", list(SEARCH_SIGNALS))
    if not data.get("limit"):
        data["limit"] = "10"
    return data
