from __future__ import annotations

from django import forms

from models_hub.models import Task, Visibility

SORTED_TASKS = [("", "All tasks"), *Task.choices]


class CatalogFilterForm(forms.Form):
    """The catalog's query string; anything invalid is dropped rather than failing the page."""

    q = forms.CharField(required=False, max_length=200, label="Search")
    task = forms.ChoiceField(required=False, choices=SORTED_TASKS, label="Task")
    tag = forms.SlugField(required=False, max_length=40, label="Tag")

    def filters(self) -> dict[str, str]:
        if not self.is_valid():
            return {"q": "", "task": "", "tag": ""}
        return {name: self.cleaned_data[name] or "" for name in ("q", "task", "tag")}


class ListingForm(forms.Form):
    """What a publishing org fills in; the operator sets runtime options during review."""

    name = forms.CharField(max_length=120)
    slug = forms.SlugField(
        max_length=80, help_text="The model's id in URLs and API calls; cannot change later."
    )
    summary = forms.CharField(max_length=300, help_text="One sentence for the catalog.")
    description = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 10}),
        help_text="Markdown: the model card.",
    )
    task = forms.ChoiceField(choices=Task.choices)
    source = forms.CharField(
        max_length=500, label="Hugging Face model", help_text="hf:org/name@revision"
    )
    visibility = forms.ChoiceField(choices=Visibility.choices)
    tags = forms.CharField(required=False, max_length=400, help_text="Comma-separated.")

    def tag_names(self) -> list[str]:
        return [name.strip() for name in self.cleaned_data["tags"].split(",") if name.strip()]


class EditListingForm(ListingForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["slug"].disabled = True


class DeprecateVersionForm(forms.Form):
    """A publisher's deprecation of one of its versions (the publish page)."""

    retires_at = forms.DateTimeField(
        help_text="UTC, 7 days ahead at least; pinned calls are refused from then on.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    reason = forms.CharField(required=False, widget=forms.Textarea, max_length=2000)


class StaffDeprecateVersionForm(DeprecateVersionForm):
    """Staff's deprecation of versions (admin action): they may retire at short notice."""

    force = forms.BooleanField(required=False, help_text="Allow a retirement sooner than 7 days.")
