//! The names an example's expression uses and binds, found by walking it with `syn`.

use std::collections::HashSet;

use syn::punctuated::Punctuated;
use syn::visit::Visit;

/// The single-segment paths an expression uses and the names its patterns bind.
///
/// Bindings are not scoped: a name bound anywhere in the expression (a closure's parameter, a
/// `let`, a match arm) counts as bound everywhere in it, which is enough to tell `|x| x + 1`
/// apart from a free `x`.
#[derive(Debug, Default)]
pub(super) struct Names {
    pub(super) paths: Vec<String>,
    pub(super) bound: HashSet<String>,
}

impl Names {
    pub(super) fn of(expr: &syn::Expr) -> Self {
        let mut names = Names::default();
        names.visit_expr(expr);
        names
    }

    fn single(&mut self, qself: Option<&syn::QSelf>, path: &syn::Path) {
        if let (None, None, [segment]) = (
            qself,
            path.leading_colon,
            &path.segments.iter().collect::<Vec<_>>()[..],
        ) {
            self.paths.push(segment.ident.to_string());
        }
    }
}

impl<'ast> Visit<'ast> for Names {
    fn visit_expr_path(&mut self, node: &'ast syn::ExprPath) {
        self.single(node.qself.as_ref(), &node.path);
        syn::visit::visit_expr_path(self, node);
    }

    fn visit_expr_struct(&mut self, node: &'ast syn::ExprStruct) {
        self.single(node.qself.as_ref(), &node.path);
        syn::visit::visit_expr_struct(self, node);
    }

    fn visit_pat_ident(&mut self, node: &'ast syn::PatIdent) {
        self.bound.insert(node.ident.to_string());
        syn::visit::visit_pat_ident(self, node);
    }

    /// Reads a macro's body as `a, b, ...` or as `value; count`; any other body is accepted.
    fn visit_macro(&mut self, node: &'ast syn::Macro) {
        let listed = node
            .parse_body_with(Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated)
            .map(|list| list.into_iter().collect())
            .or_else(|_| {
                node.parse_body_with(|input: syn::parse::ParseStream<'_>| {
                    let value: syn::Expr = input.parse()?;
                    input.parse::<syn::Token![;]>()?;
                    Ok(vec![value, input.parse()?])
                })
            });
        for expr in listed.unwrap_or_default() {
            Visit::visit_expr(self, &expr);
        }
    }
}
