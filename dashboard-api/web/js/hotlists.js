// Hotlist management for the police: the named watch lists (GET /api/v1/hotlists),
// one list's plates (GET /api/v1/hotlists/{name}), and editing it — add and remove
// plates locally, then save the whole list (PUT) or delete it (DELETE). The API
// normalises plates and refuses bad ones with a message, which is shown as is;
// the pipeline checks sightings against a saved list from its next batch.
//
// Deleting asks again in place (a second button) rather than with confirm(),
// which blocks the page and which an automated browser silently dismisses.

import { api } from './api.js';
import { t } from './i18n.js';
import { el, put, table, dateTime, fromXiamenInput, loading, failed, empty } from './ui.js';

export class HotlistEditor {
  constructor() {
    this.reset();
  }

  reset() {
    this.lists = null; // [{name, entries, version}] | null while loading
    this.listsError = null;
    this.open = null; // { name, entries, version, dirty } of the list being edited
    this.openError = null;
    this.message = null;
    this.confirmingDelete = false;
    this.node = null;
  }

  mount(node) {
    this.node = node;
    this.render();
  }

  async load() {
    try {
      this.lists = (await api('/api/v1/hotlists')).hotlists;
      this.listsError = null;
    } catch (error) {
      this.listsError = error;
    }
    this.render();
  }

  async openList(name) {
    this.open = { name, entries: null, version: null, dirty: false };
    this.openError = null;
    this.message = null;
    this.confirmingDelete = false;
    this.render();
    try {
      const list = await api(`/api/v1/hotlists/${encodeURIComponent(name)}`);
      if (this.open?.name === name) this.open = { name, entries: list.entries, version: list.version, dirty: false };
    } catch (error) {
      if (this.open?.name === name) this.openError = error;
    }
    this.render();
  }

  async save() {
    const { name, entries } = this.open;
    this.message = null;
    try {
      const list = await api(`/api/v1/hotlists/${encodeURIComponent(name)}`, { method: 'PUT', body: { entries } });
      this.open = { name, entries: list.entries, version: list.version, dirty: false };
      this.openError = null;
      this.message = { kind: 'ok', text: t('hot.saved', { name, v: list.version }) };
    } catch (error) {
      this.message = { kind: 'error', text: error.message };
    }
    await this.load();
  }

  async remove() {
    const { name } = this.open;
    try {
      await api(`/api/v1/hotlists/${encodeURIComponent(name)}`, { method: 'DELETE' });
      this.open = null;
      this.message = { kind: 'ok', text: t('hot.deleted', { name }) };
    } catch (error) {
      this.message = { kind: 'error', text: error.message };
    }
    this.confirmingDelete = false;
    await this.load();
  }

  render() {
    if (!this.node) return;
    put(this.node, el('div', { class: 'split' }, el('div', { class: 'col-main' }, this.renderLists()), el('div', { class: 'col-side' }, this.renderOpen())));
  }

  renderLists() {
    const card = el('div', { class: 'card hotlist-index' }, el('h2', {}, t('hot.lists')));
    if (this.listsError) card.append(failed(this.listsError));
    else if (!this.lists) card.append(loading());
    else if (this.lists.length === 0) card.append(empty(t('hot.none')));
    else {
      card.append(
        el(
          'ul',
          { class: 'hotlists' },
          this.lists.map((list) =>
            el(
              'li',
              {},
              el(
                'button',
                { type: 'button', class: this.open?.name === list.name ? 'link active' : 'link', dataset: { list: list.name }, onclick: () => this.openList(list.name) },
                el('strong', {}, list.name),
                ' ',
                el('span', { class: 'muted' }, t('hot.entries', { n: list.entries, v: list.version })),
              ),
            ),
          ),
        ),
      );
    }
    const nameInput = el('input', { name: 'list-name', pattern: '[A-Za-z0-9_-]{1,64}', required: true, placeholder: t('hot.newName'), 'aria-label': t('hot.newName') });
    const create = el('form', { class: 'inline-form' }, nameInput, el('button', { type: 'submit' }, t('hot.create')));
    create.addEventListener('submit', (event) => {
      event.preventDefault();
      // A new list exists once it is saved; until then it is only here.
      this.open = { name: nameInput.value.trim(), entries: [], version: null, dirty: true };
      this.openError = null;
      this.message = null;
      this.render();
    });
    card.append(create);
    return card;
  }

  renderOpen() {
    const card = el('div', { class: 'card hotlist-editor' });
    if (this.message) card.append(el('p', { class: `message ${this.message.kind}`, role: 'status' }, this.message.text));
    if (!this.open) {
      card.append(empty(t('hot.pick')));
      return card;
    }
    card.dataset.list = this.open.name;
    card.append(el('h2', {}, this.open.name, this.open.dirty ? el('span', { class: 'badge' }, t('hot.unsaved')) : null));
    if (this.openError) {
      card.append(failed(this.openError));
      return card;
    }
    if (!this.open.entries) {
      card.append(loading());
      return card;
    }
    const entries = this.open.entries;
    if (entries.length === 0) card.append(empty(t('hot.empty')));
    else {
      const rows = entries.map((entry, i) => [
        entry.plate,
        entry.reason,
        entry.expires_ms ? dateTime(entry.expires_ms) : t('hot.never'),
        el('button', { type: 'button', class: 'small', onclick: () => this.edit(() => entries.splice(i, 1)) }, t('hot.remove')),
      ]);
      card.append(el('div', { class: 'table-scroll' }, table([t('hot.plate'), t('hot.reason'), t('hot.expires'), ''], rows, { rowData: (i) => ({ plate: entries[i].plate }) })));
    }
    card.append(this.addForm(entries));
    const actions = el('div', { class: 'actions' }, el('button', { type: 'button', class: 'primary', onclick: () => this.save() }, t('hot.save')));
    if (this.open.version !== null) {
      actions.append(
        this.confirmingDelete
          ? el('button', { type: 'button', class: 'danger', onclick: () => this.remove() }, t('hot.confirmDelete', { name: this.open.name }))
          : el('button', { type: 'button', onclick: () => this.askToDelete() }, t('hot.delete')),
      );
    }
    card.append(actions);
    return card;
  }

  addForm(entries) {
    const plate = el('input', { name: 'plate', required: true, placeholder: t('hot.plate'), 'aria-label': t('hot.plate'), autocomplete: 'off' });
    const reason = el('input', { name: 'reason', required: true, placeholder: t('hot.reason'), 'aria-label': t('hot.reason') });
    const expires = el('input', { name: 'expires', type: 'datetime-local', title: t('hot.expires'), 'aria-label': t('hot.expires') });
    const form = el('form', { class: 'inline-form add-plate' }, plate, reason, expires, el('button', { type: 'submit' }, t('hot.add')));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.edit(() => entries.push({ plate: plate.value.trim(), reason: reason.value.trim(), expires_ms: fromXiamenInput(expires.value) }));
    });
    return form;
  }

  /** A local change to the open list: marked unsaved until the next PUT. */
  edit(change) {
    change();
    if (this.open) this.open.dirty = true;
    this.message = null;
    this.render();
  }

  askToDelete() {
    this.confirmingDelete = true;
    this.render();
  }
}
